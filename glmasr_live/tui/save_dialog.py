"""The ``s`` dialog when the session has no transcript path: asks for one."""

from __future__ import annotations

import time
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

SUFFIXES = (".txt", ".srt", ".vtt", ".jsonl")


def default_name(now: float | None = None) -> str:
    return time.strftime("captions-%Y%m%d-%H%M%S.txt", time.localtime(now))


def check_path(text: str) -> tuple[Path | None, str]:
    """The path typed, or None and why it cannot be used."""
    text = text.strip()
    if not text:
        return None, "type a file name"
    path = Path(text).expanduser()
    if path.suffix.lower() not in SUFFIXES:
        return None, f"the name must end in {', '.join(SUFFIXES)} (the format follows it)"
    if path.is_dir():
        return None, f"{path} is a directory"
    if not path.parent.is_dir():
        return None, f"no directory {path.parent}"
    return path, ""


class SaveDialog(ModalScreen[Path | None]):
    """Enter saves to the path typed; escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    DEFAULT_CSS = """
    SaveDialog { align: center middle; }
    SaveDialog > Vertical {
        width: 100%;
        max-width: 72;
        height: auto;
        border: round $primary;
        background: $surface;
        padding: 0 1;
    }
    SaveDialog #save-problem { color: $error; height: auto; }
    SaveDialog #save-hint { color: $text-muted; }
    """

    def __init__(self, suggestion: str | None = None) -> None:
        super().__init__()
        self.suggestion = suggestion if suggestion is not None else default_name()

    def compose(self) -> ComposeResult:
        box = Vertical()
        box.border_title = "Save transcript"
        with box:
            yield Static("File (.txt .srt .vtt .jsonl):", markup=False)
            yield Input(self.suggestion, id="save-path")
            yield Static("", id="save-problem", markup=False)
            yield Static("enter saves · escape cancels", id="save-hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path, problem = check_path(event.value)
        if path is None:
            self.query_one("#save-problem", Static).update(problem)
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)
