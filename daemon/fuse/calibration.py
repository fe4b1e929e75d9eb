"""Score calibration as the door uses it, and the one reader of calibration files.

Each modality's raw score ``s`` (a cosine similarity) is mapped to a log-likelihood ratio
``llr = a * s + b`` (natural log) by a :class:`Calibration` fitted offline
(:mod:`daemon.offline.fitting`). ``avid calibrate`` writes the calibrations, the fused threshold and
the runner-up margin to a JSON file; :func:`read_calibration_file` is the only code that reads one,
and it holds the file to the same strictness as the config: a schema version, finite numbers within
bounds (a threshold of -1e308 would let anyone in), every problem reported at once.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from daemon.errors import ConfigError

#: Version of a single calibration's dictionary (:meth:`Calibration.to_dict`).
CALIBRATION_SCHEMA = 1
#: Version of the calibration file written by ``avid calibrate``.
CALIBRATION_FILE_SCHEMA = 1
#: Calibration files are small (a few kB); anything far larger is not one.
MAX_CALIBRATION_FILE_BYTES = 1 << 20


@dataclass(frozen=True)
class Calibration:
    """A linear score-to-LLR map ``llr = a * score + b`` and what it was fitted on.

    ``prior`` is the effective genuine prior used in fitting; ``n_genuine`` and ``n_impostor``
    count the trials (0 for a hand-set default).
    """

    a: float
    b: float
    prior: float = 0.5
    n_genuine: int = 0
    n_impostor: int = 0

    def llr(self, scores):
        """Log-likelihood ratio (natural log) of one score or an array of scores."""
        result = self.a * np.asarray(scores, dtype=np.float64) + self.b
        return float(result) if result.ndim == 0 else result

    def score_for_llr(self, llr: float) -> float:
        """The raw score at which this calibration gives ``llr`` (inverse map)."""
        if self.a == 0:
            raise ValueError("a flat calibration (a = 0) has no inverse")
        return (llr - self.b) / self.a

    def to_dict(self) -> dict:
        """A JSON/YAML-ready dictionary; :meth:`from_dict` reads it back."""
        return {"schema": CALIBRATION_SCHEMA, "a": self.a, "b": self.b, "prior": self.prior,
                "fitted_on": {"genuine": self.n_genuine, "impostor": self.n_impostor}}

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        """Read a :meth:`to_dict` dictionary, raising :class:`ConfigError` if it is malformed."""
        try:
            schema = data.get("schema", CALIBRATION_SCHEMA)
            fitted_on = data.get("fitted_on", {})
            calibration = cls(float(data["a"]), float(data["b"]), float(data.get("prior", 0.5)),
                              int(fitted_on.get("genuine", 0)), int(fitted_on.get("impostor", 0)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"invalid calibration {data!r}: {exc}") from exc
        if schema != CALIBRATION_SCHEMA:
            raise ConfigError(f"unsupported calibration schema {schema!r}")
        if not (math.isfinite(calibration.a) and math.isfinite(calibration.b)
                and 0.0 < calibration.prior < 1.0):
            raise ConfigError(f"invalid calibration {data!r}: a and b must be finite and "
                              "0 < prior < 1")
        return calibration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class _ModalityCalibration(_Strict):
    # A slope <= 0 would make a *less* similar face more likely to be the person.
    a: float = Field(gt=0, le=10_000, description="LLR per unit of cosine similarity.")
    b: float = Field(ge=-10_000, le=10_000, description="LLR offset.")


class CalibrationFile(BaseModel):
    """The decision-relevant part of a calibration file; other keys are the fit's report."""

    # Report keys (expected FNMR, counts, data path...) are kept but never used to decide.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    schema_version: int = Field(alias="schema", ge=CALIBRATION_FILE_SCHEMA, le=CALIBRATION_FILE_SCHEMA,
                                strict=True)
    models: str | None = Field(None, max_length=200, description="Models fingerprint it was fitted for.")
    face: _ModalityCalibration
    voice: _ModalityCalibration
    # The same bounds as decision.threshold / decision.margin / liveness.min_sync_correlation.
    threshold: float = Field(ge=-50, le=100, strict=True)
    margin: float = Field(ge=0, le=100, strict=True)
    target_fmr: float = Field(gt=0, le=0.5, strict=True)
    liveness_threshold: float | None = Field(None, ge=-1, le=1, strict=True)


def _allow_int(value):
    # JSON writes 5.0 as 5.0 but a hand-edited file may say 5; strict floats would refuse ints.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _floats_from_ints(data):
    if isinstance(data, dict):
        return {k: _floats_from_ints(v) if k != "schema" else v for k, v in data.items()}
    return _allow_int(data)


def read_calibration_file(path: Path) -> CalibrationFile:
    """Read and validate a calibration file; :class:`ConfigError` lists every problem."""
    path = Path(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_CALIBRATION_FILE_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"no calibration file: {path} (run 'avid calibrate' or restore the models)") from None
    except OSError as exc:
        raise ConfigError(f"cannot read calibration file {path}: {exc.strerror or exc}") from exc
    if len(raw) > MAX_CALIBRATION_FILE_BYTES:
        raise ConfigError(f"calibration file {path} is larger than {MAX_CALIBRATION_FILE_BYTES} bytes")
    try:
        # Infinity/NaN literals are refused at parse time: no threshold may be unbounded.
        data = json.loads(raw, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"calibration file {path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"calibration file {path} must hold a JSON object")
    try:
        return CalibrationFile.model_validate(_floats_from_ints(data))
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(file)'}: {e['msg']}"
                    + (f" (got {str(e['input'])[:40]})" if e["type"] != "missing" else "")
                    for e in exc.errors()]
        raise ConfigError(f"calibration file {path} is invalid ({len(problems)} error(s)):\n  - "
                          + "\n  - ".join(problems)) from None


@dataclass(frozen=True)
class OperatingPoint:
    """The calibrations, threshold and margin a door decides with, and where they came from
    (``source``: the file; ``report``: what the fit expected, see :data:`REPORT_KEYS`)."""

    face: Calibration
    voice: Calibration
    threshold: float
    margin: float
    liveness_threshold: float | None
    source: str
    report: dict = field(default_factory=dict)


#: A calibration file's report keys an operator is shown beside the operating point in use.
REPORT_KEYS = ("target_fmr", "expected_fnmr", "fnmr_ci", "door_one_to_one", "door_one_to_one_by_enrol_utterances",
               "created")


def load_operating_point(config, models_fingerprint: str, default_path: Path) -> OperatingPoint:
    """The installer's calibration file if there is one, else ``default_path`` (shipped with the
    models); values set in the config (``decision.threshold`` ...) override the file's."""
    path = config.calibration_path if config.calibration_path.is_file() else default_path
    data = read_calibration_file(path)
    if data.models not in (None, models_fingerprint):
        raise ConfigError(f"calibration file {path} was made for other models: run 'avid calibrate' again")
    decision = config.decision
    return OperatingPoint(
        Calibration(data.face.a, data.face.b), Calibration(data.voice.a, data.voice.b),
        decision.threshold if decision.threshold is not None else data.threshold,
        decision.margin if decision.margin is not None else data.margin,
        config.liveness.min_sync_correlation if config.liveness.min_sync_correlation is not None
        else data.liveness_threshold,
        str(path), {key: value for key, value in data.model_dump().items() if key in REPORT_KEYS})
