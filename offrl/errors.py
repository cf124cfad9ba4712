"""offrl's own errors (the ground floor: imports nothing from offrl).

Every failure that a user can cause and fix -- bad data, a bad option, a damaged checkpoint, a
resume that would rewrite a run's record, a diverging run -- raises a subclass of
:class:`OfflineRLError` whose message names the file, field or option and says what to do. The
``offrl`` command prints that message in one or two lines (``--debug`` adds the traceback); any
other exception is a bug in offrl.
"""

from __future__ import annotations

__all__ = [
    "OfflineRLError",
    "ConfigError",
    "CheckpointError",
    "ResumeError",
    "IncompatibleDataError",
    "TrainingDiverged",
]


class OfflineRLError(Exception):
    """Base class of the errors offrl raises for what a user can fix."""

    exit_code: int = 2
    """The ``offrl`` command's exit status for this error."""


class ConfigError(OfflineRLError, ValueError):
    """An option's value is of the wrong type or out of range; the message names the option."""


class CheckpointError(OfflineRLError, ValueError):
    """A checkpoint file cannot be read, is damaged, or is not an offrl checkpoint."""


class ResumeError(OfflineRLError, ValueError):
    """``--resume`` was asked with options or data other than those the run was trained with."""


class IncompatibleDataError(OfflineRLError, ValueError):
    """The dataset does not fit the evaluation environment or the chosen algorithm."""


class TrainingDiverged(OfflineRLError, RuntimeError):
    """A loss, Q-value or parameter became non-finite. ``diagnosis`` holds the details (which
    quantity, the step, its last finite values and trend, the options that usually cause it)."""

    exit_code = 3

    def __init__(self, message: str, diagnosis: dict[str, object]) -> None:
        super().__init__(message)
        self.diagnosis = diagnosis
