"""The interface a live session offers to front ends (the TUI, the plain-lines printer, glmasr_live/plain.py)."""

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


class RunnableSession(LiveSession, Protocol):
    """A session a front end starts and waits on (``LivePipeline`` is one)."""

    def start(self) -> None:
        """Load the model and begin capture; raise GlmAsrLiveError for what the user can fix."""

    def wait(self, timeout: float | None = None) -> bool:
        """True once the input ended and everything was flushed (after stop() too)."""
        ...


SessionFactory = Callable[[], RunnableSession]
