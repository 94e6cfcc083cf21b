"""User-facing errors: the CLI prints their message (what is wrong and how to fix it), no traceback."""


class DpsBenchError(Exception):
    """A problem with the user's input, data or configuration."""


class DataError(DpsBenchError):
    """A data file is missing, corrupt or of the wrong format."""


class ConfigError(DpsBenchError):
    """A setting, hyperparameter or command-line value is invalid."""
