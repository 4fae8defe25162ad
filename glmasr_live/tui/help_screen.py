"""The ``?`` screen: the keys, and what each field of the status bar means."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("space", "pause / resume capture (paused audio is not transcribed)"),
    ("c", "clear the captions on screen (transcript files keep everything)"),
    ("s", "save the transcript now (asks for a path when none was given)"),
    ("f", "finals only: hide the line still being recognised"),
    ("q", "quit: the current utterance is finished and written first"),
    ("?", "this help (escape closes it)"),
    ("↑ ↓ PgUp PgDn", "scroll through the captions (or the mouse wheel)"),
    ("Home End", "oldest caption, newest caption (new ones follow again)"),
]

FIELDS = [
    ("LIVE PAUSED ENDED", "capture state; ENDED: the input file was read to its end"),
    ("input", "device or file, and its sample rate"),
    ("▕███ ▏ -23 dBFS", "input level (RMS over ~100 ms); green while the VAD hears speech"),
    ("speech  +6 dB", "VAD state (speech or silence), gain applied to quiet speech"),
    ("step, RTF", "time of the last model step; real-time factor (below 1 keeps up)"),
    ("latency", "audio clock minus the end of the audio the last caption covers"),
    ("dropped", "audio lost to overflows or device gaps (and partials skipped when behind)"),
    ("demo CPU float32", "the model, where it runs (CPU or GPU) and its precision"),
    ("ws://…", "caption websocket (OBS overlay at its http:// address) and subscribers"),
    ("transcript", "file the finals are written to"),
]


def help_table() -> Table:
    """Two columns; the description wraps under itself (hanging indent) on narrow screens."""
    table = Table.grid(padding=(0, 2))
    table.add_column(no_wrap=True, style="bold")
    table.add_column()
    for title, rows in (("Keys", KEYS), ("Status bar", FIELDS)):
        if table.row_count:
            table.add_row("", "")
        table.add_row(Text(title, style="underline"), "")
        for key, what in rows:
            table.add_row(Text(key), Text(what))
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and status fields; escape or ? closes it."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 100%;
        max-width: 100;
        height: auto;
        max-height: 100%;
        border: round $primary;
        border-title-align: center;
        background: $surface;
        padding: 0 1;
    }
    """

    def compose(self) -> ComposeResult:
        box = VerticalScroll()
        box.border_title = "glmasr-live help"
        with box:
            yield Static(help_table())

    def action_dismiss(self, result: None = None) -> None:  # type: ignore[override]
        self.dismiss(None)
