"""Errors that the command line reports as one line and a non-zero exit."""


class EdgePcamError(Exception):
    """A problem the user can fix (bad input, missing file); printed without a traceback."""

    exit_code = 2


class DataError(EdgePcamError):
    """A dataset, image or data spec that cannot be read as PCam patches."""


class ModelFileError(EdgePcamError):
    """A model file that is missing, truncated or not an edge-pcam model."""


class RuntimeUnavailableError(EdgePcamError):
    """An interpreter or delegate that is not installed on this machine."""


class RecipeError(EdgePcamError):
    """A recipe file with unknown keys or values of the wrong type."""


class EdgePcamWarning(UserWarning):
    """Something the user should know that does not stop the work (the command line prints it as one line)."""


class MissingExtraError(EdgePcamError):
    """A workstation command (training, conversion) run where its optional packages are not installed."""
