"""Rooms: where streams publish and viewers read, each with its clock, its feed and its journal.

All of this runs on the server's event loop, except the journal's fsyncs (``RoomJournal``'s
thread). A room's clock starts when it opens (continuing a journal's last end when the room's
journal already exists); a stream is placed on it at the moment it connects, so the finals of
all speakers share one time line. The room renumbers events (``seq`` strictly increasing over
the room) and stamps ``room``; the feed fans them out to viewers through ``Outbox``es, which
never wait for a slow reader (latest partial per stream wins, finals are kept, a reader too far
behind is dropped).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import re
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from glmasr_live.captions import transcripts
from glmasr_live.errors import GlmAsrLiveError
from glmasr_live.events import CaptionEvent

log = logging.getLogger(__name__)

ROOM_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
DEFAULT_ROOM = "default"
TRANSCRIPT_FORMATS = (".jsonl", ".srt", ".vtt", ".txt")
Written = concurrent.futures.Future[None]
MAX_RESUME_S = 30 * 86400.0
"""The largest ``resume_at`` (30 days of one speaker's audio): past it, float seconds lose the
precision a room clock needs, and no meeting is that long."""
MEMORY = 1024
"""Rooms let go whose clock and speakers are remembered (a reconnect after a drop reopens one)."""


def valid_room(name: str) -> bool:
    return ROOM_NAME.fullmatch(name) is not None and not name.endswith(".")


class Outbox:
    """One websocket's outgoing messages: never blocks the publisher.

    ``send`` is the socket's send coroutine. Partials are keyed (by stream): a queued partial is
    replaced by a newer one of its key; finals and status messages are kept, and more than
    ``limit`` of them waiting drops the reader (``on_drop`` closes it).
    """

    def __init__(self, send: Callable[[str], Awaitable[None]], limit: int,
                 on_drop: Callable[[str], None]) -> None:  # fmt: skip
        self._send = send
        self._limit = limit
        self._on_drop = on_drop
        self._queue: deque[tuple[str | None, str]] = deque()
        self._kept = 0
        self._task: asyncio.Task[None] | None = None
        self.dropped = False
        self.idle = asyncio.Event()
        self.idle.set()

    def offer(self, message: str, partial_key: str | None = None) -> None:
        if self.dropped:
            return
        if partial_key is not None:
            for i, (key, _) in enumerate(self._queue):
                if key == partial_key:
                    del self._queue[i]
                    break
        else:
            self._kept += 1
            if self._kept > self._limit:
                self.dropped = True
                self._queue.clear()
                self._on_drop(f"more than {self._limit} messages behind")
                return
        self._queue.append((partial_key, message))
        self.idle.clear()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._queue:
                key, message = self._queue.popleft()
                if key is None:
                    self._kept -= 1
                await self._send(message)
        except Exception as exc:  # noqa: BLE001 - a dead socket: its handler cleans up
            log.debug("outbox send failed: %s", exc)
            self.dropped = True
            self._queue.clear()
        finally:
            self._task = None
            self.idle.set()

    async def flush(self, timeout: float) -> None:
        """Wait (bounded) until everything offered so far has been written."""
        if not self.idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), timeout)


class RoomJournal:
    """A room's durable transcript: the fsync'd JSONL journal plus SRT/VTT/TXT with speakers.

    ``append`` returns a future that completes once the final is on disk (or fails with the
    write's error); a thread of its own does the writing, in order.
    """

    def __init__(self, directory: Path, room: str) -> None:
        self.paths = [directory / f"{room}{fmt}" for fmt in TRANSCRIPT_FORMATS]
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.writer = transcripts.TranscriptWriter(self.paths, order_by_start=True)
        except (OSError, GlmAsrLiveError) as exc:
            # Said once in the log (the operator's to fix) and as the clients' close reason.
            log.warning("room %s cannot open its transcript: %s", room, exc)
            raise RoomUnavailable(_unavailable(room, exc)) from None
        # (a final, or None: flushed()'s marker; its future), or None: stop
        self._q: queue.Queue[tuple[CaptionEvent | None, Written] | None] = queue.Queue()
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"room-journal-{room}", daemon=True)
        self._thread.start()

    def path(self, fmt: str) -> Path:
        return self.paths[TRANSCRIPT_FORMATS.index(fmt)]

    def append(self, event: CaptionEvent) -> concurrent.futures.Future[None]:
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._q.put((event, done))
        return done

    def flushed(self) -> concurrent.futures.Future[None]:
        """Completes once every final appended before this call is written (writes go in order)."""
        done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._q.put((None, done))
        return done

    def _run(self) -> None:
        while (item := self._q.get()) is not None:
            event, done = item
            if event is None:  # flushed()'s marker
                done.set_result(None)
                continue
            try:
                self.writer.append(event)
                done.set_result(None)
            except Exception as exc:  # noqa: BLE001 - reported on the stream's socket
                self.error = exc
                log.error("room transcript write failed: %s", exc)
                done.set_exception(exc)

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(30)
        self.writer.close()


class Room:
    """One meeting: its clock, its streams and speakers, its viewers, its recent finals."""

    def __init__(self, name: str, journal: RoomJournal, backlog: int) -> None:
        self.name = name
        self.journal = journal
        self._base = journal.writer.resume_clock
        self._t0 = time.monotonic()
        self._seq = journal.writer.next_seq
        self.recent: deque[CaptionEvent] = deque(journal.writer.finals[-backlog:] if backlog else (), backlog)
        self.viewers: set[Outbox] = set()
        self.streams: set[str] = set()
        self.origins: dict[str, float] = {}  # speaker -> where their first stream began
        # speaker -> (seconds of their audio received, counted as acks count; monotonic when)
        self.heard: dict[str, tuple[float, float]] = {}
        self.link: Any = None  # the room's ``bus.RoomLink`` when replicas share rooms
        self.joining = 0  # clients waiting for the bus to attach the room

    @property
    def next_seq(self) -> int:
        return self._seq

    def set_clock(self, now: float) -> None:
        """Set the room's clock to ``now`` (the bus: the room's clock shared by every replica)."""
        self._base, self._t0 = now, time.monotonic()

    def now(self) -> float:
        """The room's clock: seconds since it opened (continuing its journal)."""
        return self._base + (time.monotonic() - self._t0)

    def place(self, speaker: str, resume_at: float | None) -> float:
        """Where on the room's clock a stream of ``speaker`` starting now begins.

        ``resume_at``: the stream continues an earlier one of this speaker (a reconnect) from
        that many seconds after that speaker's first stream began.
        """
        if resume_at is not None and speaker in self.origins:
            return self.origins[speaker] + resume_at
        origin = self.now()
        if speaker not in self.origins:
            # An unknown speaker resuming (the server restarted, or the bus lost its origins):
            # this stream's second 0 is their second ``resume_at``, so their first stream began
            # that much earlier; the next reconnect then lands where this one's audio went.
            self.origins[speaker] = origin - (resume_at or 0.0)
            if self.link is not None:
                self.link.note_origin(speaker, self.origins[speaker])
        return origin

    def check_resume(self, speaker: str, resume_at: float, max_speed: float, burst_s: float) -> None:
        """BadResume unless ``resume_at`` can be a point of the speaker's audio: at most what
        this room heard from them, plus what a live source could have made since (the page
        drops its oldest audio in a long outage and resumes past the gap) and a burst."""
        if resume_at > MAX_RESUME_S:
            raise BadResume(f"resume_at must be seconds from 0 to {MAX_RESUME_S:.0f}")
        if speaker not in self.heard:
            return  # their audio was heard elsewhere (another replica, before a restart)
        heard, at = self.heard[speaker]
        limit = heard + max_speed * (time.monotonic() - at) + burst_s
        if resume_at > limit:
            raise BadResume(
                f"resume_at={resume_at:g} is past the {heard:.2f} s of audio received from {speaker}"[:123]
            )

    def hear(self, speaker: str, seconds: float) -> None:
        """The speaker's audio received so far (their acks' count), for ``check_resume``."""
        self.heard[speaker] = (seconds, time.monotonic())

    def publish(
        self, event: CaptionEvent, offset: float, deliver: Callable[[CaptionEvent], None]
    ) -> concurrent.futures.Future[None] | None:
        """Put one of a stream's events on the room's clock and numbering, fan it out and hand
        the room's event to ``deliver`` (the stream's own socket).

        Status events go back to their own stream only; partials and finals go to every viewer.
        Returns, for a final, the future of its journal write. With a bus the event is numbered
        by Redis and comes back to every replica's ``receive``; ``deliver`` is called then.
        """
        ev = replace(
            event, room=self.name, start=event.start + offset,
            end=event.end + offset, audio_clock=event.audio_clock + offset,
        )  # fmt: skip
        if self.link is not None:
            return self.link.publish(ev, deliver)
        ev = replace(ev, seq=self._seq)
        written = None if ev.type == "status" else self.receive(ev)
        self._seq = ev.seq + 1
        deliver(ev)
        return written

    def receive(self, ev: CaptionEvent) -> concurrent.futures.Future[None] | None:
        """A numbered partial or final of the room: fan it out (once: a seq already seen is
        dropped), keep and journal a final; the journal write's future for a final."""
        if ev.seq < self._seq:
            return None
        self._seq = ev.seq + 1
        written = None
        if ev.type == "final":
            self.recent.append(ev)
            written = self.journal.append(ev)
        message = ev.to_json()
        key = None if ev.type == "final" else f"p:{ev.stream}"
        for viewer in list(self.viewers):
            viewer.offer(message, key)
        return written

    def notify(self, code: str, message: str) -> None:
        """Tell the room's viewers about the room itself (the bus lost or back); not numbered:
        it repeats the last seq."""
        ev = CaptionEvent(
            "status", max(self._seq - 1, 0), -1, 0.0, 0.0, "", "", "", self.now(), time.time(),
            status=code, message=message, room=self.name,
        )  # fmt: skip
        for viewer in list(self.viewers):
            viewer.offer(ev.to_json())

    @property
    def idle(self) -> bool:
        return not self.streams and not self.viewers and not self.joining


class RoomFull(Exception):
    """Refused: the close reason (the server, or the room, holds as many streams as it may)."""


class RoomUnavailable(Exception):
    """Refused: the room's transcript cannot be opened (a corrupt journal, a disk fault); the
    message is the close reason, for the room's clients (no server paths in it)."""


class BadResume(ValueError):
    """Refused: a ``resume_at`` the server cannot place; the message is the close reason."""


def _unavailable(room: str, exc: Exception) -> str:
    if isinstance(exc, transcripts.CorruptJournal):
        return f"transcript of room {room} is corrupt (journal line {exc.line}): the operator must move {room}.jsonl aside"
    if isinstance(exc, OSError):
        return f"room {room}: its transcript cannot be opened ({exc.strerror or exc})"
    return f"room {room}: its transcript cannot be opened ({type(exc).__name__})"


class Rooms:
    """The server's rooms by name; a room with no streams and no viewers is let go."""

    def __init__(self, directory: Path, backlog: int, max_rooms: int, bus: Any = None) -> None:
        self.directory = directory
        self.bus = bus
        self.backlog = backlog
        self.max_rooms = max_rooms
        self._rooms: dict[str, Room] = {}
        # Rooms let go: (their clock then, speakers' origins, what was heard from them). A
        # speaker whose drop emptied the room reconnects into a new Room; without these its
        # clock would restart at the journal's last end and place the resumed audio there.
        self._memory: OrderedDict[str, tuple[float, dict[str, float], dict[str, tuple[float, float]]]] = (
            OrderedDict()
        )

    def get(self, name: str) -> Room | None:
        return self._rooms.get(name)

    def open(self, name: str) -> Room:
        room = self._rooms.get(name)
        if room is None:
            if len(self._rooms) >= self.max_rooms:
                raise RoomFull(f"server full: {self.max_rooms} rooms open")
            room = Room(name, RoomJournal(self.directory, name), self.backlog)
            if (kept := self._memory.pop(name, None)) is not None:
                clock, origins, heard = kept
                room.set_clock(max(room.now(), clock))
                room.origins.update(origins)
                room.heard.update(heard)
            self._rooms[name] = room
            if self.bus is not None:
                room.link = self.bus.link(room)
        return room

    def release(self, room: Room) -> None:
        """Let an idle room go (its journal is closed; reopening it continues the journal)."""
        if room.idle and self._rooms.get(room.name) is room:
            del self._rooms[room.name]
            self._memory[room.name] = (room.now(), dict(room.origins), dict(room.heard))
            while len(self._memory) > MEMORY:
                self._memory.popitem(last=False)
            if room.link is not None:
                self.bus.unlink(room.link)
            room.journal.close()

    def transcript_path(self, name: str, fmt: str) -> Path:
        return self.directory / f"{name}{fmt}"

    @property
    def all(self) -> list[Room]:
        return list(self._rooms.values())

    def stream_count(self) -> int:
        return sum(len(r.streams) for r in self._rooms.values())
