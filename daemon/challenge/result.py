"""The outcome of the challenge, as the decision reads it."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Why a challenge fails, in the order they are tested.
REASONS = ("no_challenge", "not_answered", "still_face", "mouth_still", "wrong_answer")


@dataclass(frozen=True)
class ChallengeResult:
    """Outcome of a challenge, as the decision reads it.

    ``passed`` needs at least ``min_correct`` answers that were timed, spoken by an opening mouth and
    recognised as the prompted digit; ``people`` are the enrolled people whose own recordings the
    answers matched (None when the content was not checked per person: it then holds for anyone).
    ``reason`` is one of :data:`REASONS` when it failed. Holds no audio and no digits.
    """

    passed: bool
    reason: str = ""
    answered: int = 0
    correct: int = 0
    prompts: int = 0
    people: frozenset[str] | None = field(default=None)

    def passed_for(self, person: str) -> bool:
        """Whether the challenge passed with ``person``'s own recordings of the digits."""
        return self.passed and (self.people is None or person in self.people)
