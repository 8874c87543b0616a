"""Exceptions raised by vaelib; each message says what was wrong and what to do."""

__all__ = ["VaelibError", "DataError", "CheckpointError", "DeviceError"]


class VaelibError(ValueError):
    """Base class: bad input to a vaelib function."""


class DataError(VaelibError):
    """A data set is missing, unreadable or of the wrong form."""


class CheckpointError(VaelibError):
    """A checkpoint is corrupt, truncated, not vaelib's, or made for another model."""


class DeviceError(VaelibError):
    """A device was requested that this machine does not have."""
