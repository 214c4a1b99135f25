"""Errors a user can act on. The CLI prints their message and exits non-zero, nothing else."""


class HsrError(Exception):
    """Base class: the message alone must tell the user what went wrong and what to do."""


class ConfigError(HsrError, ValueError):
    """Bad hyperparameters or options."""


class JudgeError(HsrError, ValueError):
    """A judge could not be built or run; the message says which and why."""


class ModelLoadError(HsrError, RuntimeError):
    """A model could not be loaded; the message says what to do about it."""
