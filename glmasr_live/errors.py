"""One exception hierarchy. The CLI turns any of these into one line on stderr and an exit code."""

from __future__ import annotations


class GlmAsrLiveError(Exception):
    """Something the user can fix: printed as one line, no traceback."""

    exit_code = 2


class AudioInputError(GlmAsrLiveError):
    """A file, stream or device that cannot be read."""


class ModelLoadError(GlmAsrLiveError):
    """The model cannot be found or loaded."""


class ConfigError(GlmAsrLiveError):
    """A bad option value, config file or environment variable."""


class DeviceError(GlmAsrLiveError):
    """No usable audio input device, or the one asked for does not exist."""


class ServerError(GlmAsrLiveError):
    """The websocket server cannot start (port busy, bad address)."""
