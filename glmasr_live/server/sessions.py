"""One live stream of the server (an ingest or realtime socket), from open to its last final.

A ``StreamSession`` joins a room, opens a ``LiveStream`` on the shared ``Captioner`` and moves
its events from the scheduler thread onto the event loop, where the room renumbers and fans
them out and the socket's own ``deliver`` gets them. ``finish`` ends the stream and returns
once its last final has been delivered and written to the room's journal: a socket closes
only after that.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from glmasr_live.events import CaptionEvent
from glmasr_live.server.rooms import BadResume, Room, RoomFull, Rooms

log = logging.getLogger(__name__)


class StreamSession:
    def __init__(self, rooms: Rooms, room: Room, speaker: str, offset: float,
                 deliver: Callable[[CaptionEvent], None]) -> None:  # fmt: skip
        self.rooms = rooms
        self.room = room
        self.speaker = speaker
        self.offset = offset
        self.id = f"s-{secrets.token_hex(6)}"
        self.deliver = deliver
        self.stream: Any = None
        self.ended = False
        self.journal_error: str | None = None
        self._loop = asyncio.get_running_loop()
        self._finished = asyncio.Event()
        self._writes: list[asyncio.Future[None]] = []

    @classmethod
    def open(cls, ctx: Any, room_name: str, speaker: str, sample_rate: int, channels: int,
             resume_at: float | None, deliver: Callable[[CaptionEvent], None]) -> StreamSession:  # fmt: skip
        """Join ``room_name`` and start a stream; RoomFull when a limit says no, RoomUnavailable
        when the room's transcript cannot be opened, BadResume for a ``resume_at`` past the
        speaker's audio."""
        s = ctx.settings
        if ctx.stream_count() >= s.max_streams:
            raise RoomFull(f"server full: {s.max_streams} streams open, try again later")
        room = ctx.rooms.open(room_name)
        try:
            if len(room.streams) >= s.max_streams_per_room:
                raise RoomFull(f"room full: {s.max_streams_per_room} streams open in it, try again later")
            if resume_at is not None:
                room.check_resume(speaker, resume_at, s.max_speed, s.burst_s)
        except (RoomFull, BadResume):
            ctx.rooms.release(room)
            raise
        session = cls(ctx.rooms, room, speaker, room.place(speaker, resume_at), deliver)
        room.streams.add(session.id)
        try:
            session.stream = ctx.captioner.open_stream(
                session.id, sample_rate, channels, on_event=session._from_scheduler,
                on_finished=session._finished_from_scheduler,
            )  # fmt: skip
        except Exception:
            room.streams.discard(session.id)
            ctx.rooms.release(room)
            raise
        return session

    # -- scheduler thread → loop ------------------------------------------------------------

    def _from_scheduler(self, event: CaptionEvent) -> None:
        self._loop.call_soon_threadsafe(self._publish, event)

    def _finished_from_scheduler(self) -> None:
        self._loop.call_soon_threadsafe(self._finished.set)

    def _publish(self, event: CaptionEvent) -> None:
        ev = replace(event, stream=self.id, speaker=self.speaker)
        written = self.room.publish(ev, self.offset, self.deliver)
        if written is not None:
            self._writes.append(asyncio.wrap_future(written))

    # -- the socket's side ------------------------------------------------------------------

    def feed(self, samples: np.ndarray) -> None:
        if not self.ended:
            self.stream.feed(samples)

    @property
    def audio_seconds(self) -> float:
        return float(self.stream.audio_seconds) if self.stream is not None else 0.0

    async def finish(self, timeout: float) -> None:
        """End the stream; return once its last final is delivered and journaled (bounded)."""
        if not self.ended:
            self.ended = True
            self.stream.end()
        try:
            await asyncio.wait_for(self._finished.wait(), timeout)
        except TimeoutError:
            log.error("stream %s: no final within %.0f s of its end", self.id, timeout)
        await asyncio.sleep(0)  # events handed over just before the finish notice
        for w in self._writes:
            try:
                await asyncio.wait_for(w, timeout)  # with a bus: Redis may be away
            except TimeoutError:
                self.journal_error = f"a final was not journaled within {timeout:.0f} s (room bus away?)"
            except Exception as exc:  # noqa: BLE001 - the final was still sent; say so
                self.journal_error = str(exc)
        self._writes.clear()
        self.room.streams.discard(self.id)
        self.rooms.release(self.room)
