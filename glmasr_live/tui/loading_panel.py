"""What the caption area shows while the model loads: the step, and download progress.

The session factory runs in a thread while this panel captures what is written to stdout and
stderr (Textual redirects both while it runs): huggingface_hub's download bars land here and
become a progress bar, instead of scribbling over the screen. Log lines of the package come
in as :class:`LoadProgress` messages from the app.
"""

from __future__ import annotations

import re
import time

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

_PERCENT = re.compile(r"(\d{1,3}(?:\.\d+)?)%")


def parse_progress(text: str) -> tuple[str, float | None] | None:
    """The last line of a tqdm-style write and the percentage in it, or None for blank text.

    ``model.safetensors:  45%|████▌     | 2.0G/4.5G [00:10<00:12, 200MB/s]`` gives 45.0.
    """
    pieces = [p.strip() for p in re.split(r"[\r\n]", text)]
    pieces = [p for p in pieces if p]
    if not pieces:
        return None
    line = pieces[-1]
    m = _PERCENT.search(line)
    percent = min(100.0, float(m.group(1))) if m else None
    return line, percent


class LoadingPanel(Vertical):
    """``Loading model NAME… (12 s)``, the current step and, when known, a progress bar."""

    DEFAULT_CSS = """
    LoadingPanel { height: 1fr; padding: 1 2; }
    LoadingPanel #loading-title { text-style: bold; }
    LoadingPanel #loading-stage {
        color: $text-muted;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        margin-top: 1;
    }
    LoadingPanel ProgressBar { margin-top: 1; display: none; }
    LoadingPanel ProgressBar.-known { display: block; }
    """

    def __init__(self, model: str | None, *, tick: float | None = 1.0, id: str | None = None) -> None:
        super().__init__(id=id)
        self.model = model
        self.tick = tick
        self._t0 = time.monotonic()
        self.stage = "starting…"
        self.percent: float | None = None
        self._capturing = False

    def compose(self) -> ComposeResult:
        yield Static(self._title(), id="loading-title", markup=False)
        yield Static(self.stage, id="loading-stage", markup=False)
        yield ProgressBar(total=100, show_eta=False, id="loading-progress")

    def on_mount(self) -> None:
        self.app.begin_capture_print(self, stdout=True, stderr=True)
        self._capturing = True
        if self.tick:
            self.set_interval(self.tick, self._update_title)

    def stop_capture(self) -> None:
        """The model is loaded (or failed): output is no longer progress."""
        if self._capturing:
            self._capturing = False
            self.app.end_capture_print(self)

    def on_unmount(self) -> None:
        self.stop_capture()

    def _title(self) -> str:
        what = f"model {self.model}" if self.model else "the model"
        elapsed = time.monotonic() - self._t0
        suffix = f" ({elapsed:.0f} s)" if self.tick and elapsed >= 1 else ""
        return f"Loading {what}…{suffix}"

    def _update_title(self) -> None:
        self.query_one("#loading-title", Static).update(self._title())

    def set_stage(self, text: str, percent: float | None = None) -> None:
        self.stage = text
        self.query_one("#loading-stage", Static).update(text)
        if percent is not None:
            self.percent = percent
            bar = self.query_one(ProgressBar)
            bar.add_class("-known")
            bar.update(progress=percent)

    def on_print(self, event: events.Print) -> None:
        parsed = parse_progress(event.text)
        if parsed is not None:
            self.set_stage(*parsed)
