"""The interface a live session offers to front ends (the TUI, the plain-lines printer)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from glmasr_live.events import CaptionEvent, PipelineStats, SessionInfo

Listener = Callable[[CaptionEvent | PipelineStats], None]


class LiveSession(Protocol):
    """A running pipeline as seen by a front end.

    ``subscribe`` callbacks run on a pipeline thread: a UI must hand them to its own thread
    (Textual: ``App.call_from_thread`` or ``post_message``).
    """

    @property
    def info(self) -> SessionInfo: ...

    def subscribe(self, listener: Listener) -> None: ...

    def set_paused(self, paused: bool) -> None:
        """Pause or resume capture (paused audio is not transcribed)."""

    @property
    def paused(self) -> bool: ...

    def save_transcript(self, path: Path) -> Path:
        """Write the finals so far to ``path`` (format from its suffix) and return it."""
        ...

    def stop(self) -> None:
        """Stop capture, finish the current utterance (its final is emitted), flush, return."""
