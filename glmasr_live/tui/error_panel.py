"""What the caption area shows when the session cannot start: the error and how to fix it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from glmasr_live.errors import (
    AudioInputError,
    ConfigError,
    DeviceError,
    GlmAsrLiveError,
    ModelLoadError,
    ServerError,
)

FIXES: list[tuple[type[BaseException], str]] = [
    (
        DeviceError,
        "Connect a microphone, or list the inputs with `glmasr-live devices` and pick one with "
        "--input-device NAME|INDEX. To caption a recording instead: --input FILE.",
    ),
    (
        ModelLoadError,
        "Download the weights on a connected machine (huggingface-cli download "
        "zai-org/GLM-ASR-Nano-2512) and pass --model PATH to the copy. "
        "--model demo runs the bundled demo model.",
    ),
    (
        ServerError,
        "Another program holds the websocket port: pick another with --ws HOST:PORT "
        "(port 0 picks a free one), or run without the server: --no-ws.",
    ),
    (AudioInputError, "Check the path and the format (wav, flac, ogg, mp3; raw PCM with --input -)."),
    (ConfigError, "See `glmasr-live --help` for the options and their values."),
]


def fix_for(error: BaseException) -> str:
    """One or two sentences that say what to do about ``error``."""
    for kind, fix in FIXES:
        if isinstance(error, kind):
            return fix
    if isinstance(error, GlmAsrLiveError):
        return ""
    return "This is a bug: run again with -v and report the log."


def error_title(error: BaseException) -> str:
    if isinstance(error, GlmAsrLiveError):
        return str(error) or type(error).__name__
    return f"{type(error).__name__}: {error}"


class ErrorPanel(Vertical):
    """``Cannot start captions``, the one-line error, the fix, and how to leave."""

    DEFAULT_CSS = """
    ErrorPanel { height: 1fr; padding: 1 2; }
    ErrorPanel #error-heading { color: $error; text-style: bold; }
    ErrorPanel #error-message { margin-top: 1; }
    ErrorPanel #error-fix { margin-top: 1; color: $success; }
    ErrorPanel #error-quit { margin-top: 1; color: $text-muted; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.error: BaseException | None = None

    def compose(self) -> ComposeResult:
        yield Static("Cannot start captions", id="error-heading")
        yield Static("", id="error-message", markup=False)
        yield Static("", id="error-fix", markup=False)
        yield Static("Press q to quit.", id="error-quit")

    def show_error(self, error: BaseException) -> None:
        self.error = error
        self.query_one("#error-message", Static).update(error_title(error))
        fix = fix_for(error)
        self.query_one("#error-fix", Static).update(f"Fix: {fix}" if fix else "")
