"""The caption hub: an asyncio loop on its own thread that fans events out to sinks.

Producers on any thread call ``publish``; sinks run on the hub thread in order. A sink that
raises is logged and kept (one broken front end must not stop the captions). Blocking work
(transcript fsync) runs on a dedicated writer thread fed by an unbounded queue of finals only.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

from glmasr_live.events import CaptionEvent, PipelineStats

log = logging.getLogger(__name__)

Item = CaptionEvent | PipelineStats
Sink = Callable[[Item], None]
T = TypeVar("T")


class CaptionHub:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._sinks: list[Sink] = []
        self._thread = threading.Thread(target=self._run, name="caption-hub", daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    def add_sink(self, sink: Sink) -> None:
        """Add a sink (from any thread); it sees events published after this call."""
        self.loop.call_soon_threadsafe(self._sinks.append, sink)

    def publish(self, item: Item) -> None:
        """Thread-safe: hand ``item`` to every sink on the hub thread."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._dispatch, item)

    def _dispatch(self, item: Item) -> None:
        for sink in list(self._sinks):
            try:
                sink(item)
            except Exception:  # noqa: BLE001
                log.exception("caption sink %r failed", sink)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the hub loop from another thread and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until everything published before this call has been dispatched."""
        done = threading.Event()
        self.loop.call_soon_threadsafe(done.set)
        done.wait(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.drain()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class FinalsWriterThread:
    """Appends finals to a transcript writer off the hub thread (fsync blocks)."""

    def __init__(self, writer: Any, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.writer = writer
        self._on_error = on_error
        # Unbounded on purpose: finals are never dropped, and there is at most one per utterance.
        self._q: queue.Queue[CaptionEvent | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="transcript-writer", daemon=True)
        self.error: BaseException | None = None
        self._thread.start()

    def __call__(self, item: Item) -> None:
        if isinstance(item, CaptionEvent) and item.type == "final":
            self._q.put(item)

    def _run(self) -> None:
        while (ev := self._q.get()) is not None:
            try:
                self.writer.append(ev)
            except Exception as e:  # noqa: BLE001 - reported, the captions go on
                first = self.error is None
                self.error = e
                log.error("transcript write failed: %s", e)
                if first and self._on_error is not None:
                    self._on_error(e)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(10)
        self.writer.close()


class EventQueue:
    """For ``LivePipeline.events()``: bounded; when full the oldest *partial* is dropped,
    finals and status events are always kept."""

    def __init__(self, maxlen: int = 1000) -> None:
        self._items: deque[Item | None] = deque()
        self._cond = threading.Condition()
        self.maxlen = maxlen
        self.dropped = 0

    def __call__(self, item: Item) -> None:
        if isinstance(item, PipelineStats):
            return
        with self._cond:
            if len(self._items) >= self.maxlen:
                for i, old in enumerate(self._items):
                    if isinstance(old, CaptionEvent) and old.type == "partial":
                        del self._items[i]
                        self.dropped += 1
                        break
            self._items.append(item)
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._items.append(None)
            self._cond.notify()

    def __iter__(self) -> Iterator[CaptionEvent]:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._items))
                item = self._items.popleft()
            if item is None:
                return
            if isinstance(item, CaptionEvent):
                yield item
