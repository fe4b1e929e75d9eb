"""The outcome of the liveness check, as the decision reads it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LivenessResult:
    """Outcome of the liveness check; ``passed`` is False when it failed or could not run."""

    passed: bool
    score: float | None = None
    reason: str = ""
