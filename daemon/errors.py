"""The package's exceptions.

Every error avid raises on purpose derives from :class:`AvidError`; each subclass also inherits the
builtin it resembles, so callers may catch either (``except ValueError`` still sees a config error).
"""


class AvidError(Exception):
    """Base class of every error raised by avid."""


class ConfigError(AvidError, ValueError):
    """The configuration file is missing, unreadable or invalid."""


class ModelError(AvidError, RuntimeError):
    """A model file is missing, corrupt, or does not match the manifest."""


class ModelSelfTestError(ModelError):
    """A model computes outputs too far from its bundled reference outputs on this CPU and runtime
    (a new CPU, runtime or kernel that silently computes wrong embeddings). ``report`` holds the
    self-test's report when the models were run."""

    report = None


class SourceError(AvidError, IOError):
    """A camera or microphone source failed."""


class SourceTimeout(SourceError, TimeoutError):
    """A camera or microphone source gave nothing within its time limit."""


class LockError(AvidError, RuntimeError):
    """The lock relay could not be set up or driven."""


class StoreError(AvidError, OSError):
    """A template or counter file is unreadable, corrupt or from other models."""


class EnrolmentError(AvidError, ValueError):
    """An enrolment sample is unusable (no face, no speech, too short...).

    ``problems`` holds one line per unusable sample, so that the checks of several kinds of sample
    can be merged into one error that names them all (:meth:`refused`)."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]

    @classmethod
    def refused(cls, problems: list[str], what: str = "enrolment") -> "EnrolmentError":
        """The error naming every problem: ``<what> refused:`` then one indented line each."""
        return cls(f"{what} refused:\n  " + "\n  ".join(problems), problems)


class UnsafePermissions(StoreError, PermissionError):
    """A state, key, template or config path can be changed (or read) by someone other than the
    service user and root; the message names every such path with its owner and mode."""


class StateBusy(StoreError, TimeoutError):
    """Another avid process held the state directory's lock for longer than the time limit."""


class NotInitialised(StoreError, FileNotFoundError):
    """The state directory or the device key is missing, so this is not (yet) a door."""
