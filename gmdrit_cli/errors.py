"""User-facing errors.

Core code raises these; the CLI prints ``str(error)`` as one line and exits with code 1.
Each message says what is wrong and what to do about it.
"""


class GmdritError(Exception):
    """Base class of every error that is the user's to fix (bad input, bad config, missing file)."""


class ConfigError(GmdritError):
    """A preset, an override or a resolved config value is invalid."""


class DataError(GmdritError):
    """A data folder is missing, empty or unreadable."""


class CheckpointError(GmdritError):
    """A checkpoint or run folder is missing, damaged or incompatible."""


class InferenceError(GmdritError):
    """A translate / interpolate / export call cannot run (bad option, model or reference)."""


class TrainingError(GmdritError):
    """Training cannot continue (for example a loss became NaN)."""


class ReportError(GmdritError):
    """`gmdrit report` cannot use a folder it was given (not a run, nothing to show)."""


class OutputError(GmdritError):
    """A file or folder cannot be written, or must not be (it is not gmdrit's to replace)."""


class LimitError(GmdritError):
    """A number given to an option is not finite, or outside the range gmdrit can handle."""


def speaks(error: GmdritError, rank: int) -> bool:
    """Whether process ``rank`` of a torchrun group prints ``error``: rank 0 prints every error (all ranks
    meet the same ones), the others only errors about themselves (``per_process``, e.g. a failed join)."""
    return rank == 0 or getattr(error, "per_process", False)
