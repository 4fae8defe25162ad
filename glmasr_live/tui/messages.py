"""Messages into the caption app. Pipeline threads post them; the app's loop handles them.

``App.post_message`` is thread-safe, so listeners and worker threads hand over with it and
never touch widgets themselves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from glmasr_live.events import CaptionEvent, PipelineStats
from glmasr_live.session import RunnableSession


@dataclass
class CaptionReceived(Message):
    """A caption event (partial, final or status) from the session."""

    event: CaptionEvent

    def can_replace(self, message: Message) -> bool:
        # A partial waiting behind a newer partial is stale: only the newest is drawn.
        # Finals and status events are never dropped.
        return (
            self.event.type == "partial"
            and isinstance(message, CaptionReceived)
            and message.event.type == "partial"
        )


@dataclass
class StatsReceived(Message):
    """A pipeline stats snapshot (a few per second)."""

    stats: PipelineStats

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatsReceived)


@dataclass
class SessionStarted(Message):
    """The model is loaded and the session runs."""

    session: RunnableSession


@dataclass
class SessionFailed(Message):
    """Starting the session raised; ``error`` says why."""

    error: BaseException


@dataclass
class LogLine(Message):
    """A warning or error logged while the app runs (shown as a notification)."""

    level: int
    text: str


@dataclass
class InputEnded(Message):
    """The input ended and everything was flushed (a file was read to its end)."""


@dataclass
class SessionStopped(Message):
    """``stop()`` returned: the last final was emitted and written."""

    error: BaseException | None = None


@dataclass
class TranscriptSaved(Message):
    path: Path


@dataclass
class TranscriptSaveFailed(Message):
    path: Path
    error: str
