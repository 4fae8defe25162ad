"""What every endpoint handler of the server reaches, as ``request.app[CTX]``: settings, access
rules, rooms, the captioner, the open stream sessions and viewers, and the stop signal."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

from aiohttp import web

from glmasr_live import __version__
from glmasr_live.events import SCHEMA_VERSION, CaptionEvent
from glmasr_live.policy import CaptionBuilder
from glmasr_live.server.access import Access, Role
from glmasr_live.server.rooms import Room, Rooms
from glmasr_live.server.settings import ServerSettings

JOIN_WAIT_S = 5.0
"""With a bus, how long a new client waits for its room's shared state while Redis is away."""


class ServerContext:
    def __init__(self, settings: ServerSettings, captioner: Any) -> None:
        self.settings = settings
        self.captioner = captioner
        self.access = Access(
            settings.host, settings.publish_token, settings.view_token,
            settings.allowed_hosts, settings.allowed_origins,
        )  # fmt: skip
        self.bus: Any = None
        if settings.bus:
            from glmasr_live.server.bus import Bus

            self.bus = Bus(settings.bus)
        self.rooms = Rooms(settings.transcripts_dir, settings.backlog_finals, settings.max_rooms, self.bus)
        self.sessions: set[Any] = set()
        self.viewers: set[web.WebSocketResponse] = set()
        self.stopping = asyncio.Event()
        self.port = settings.port
        self._tasks: set[asyncio.Task[Any]] = set()
        self._status = CaptionBuilder()

    # -- what handlers use ----------------------------------------------------------------

    def refuse(self, request: web.Request, role: Role) -> web.Response | None:
        """None when the request may go on as ``role``; else the 403 to answer with."""
        why = self.access.browser_ok(request.headers)
        if why is not None:
            return self.text(403, f"forbidden: {why}")
        if not self.access.may(role, request.query, request.headers):
            return self.text(403, f"forbidden: this needs a {role} token")
        return None

    @staticmethod
    def text(status: int, message: str) -> web.Response:
        return web.Response(status=status, text=message + "\n", headers={"Cache-Control": "no-store"})

    def hello(self, room: Room, *, stream: str | None = None, speaker: str | None = None,
              finals: bool = True) -> dict[str, Any]:  # fmt: skip
        msg: dict[str, Any] = {
            "type": "hello", "v": SCHEMA_VERSION, "server": "glmasr-live", "version": __version__,
            "room": room.name, "finals": [e.to_dict() for e in room.recent] if finals else [],
        }  # fmt: skip
        if stream is not None:
            msg["stream"] = stream
        if speaker is not None:
            msg["speaker"] = speaker
        return msg

    def status(self, session: Any, code: str, message: str) -> CaptionEvent:
        from dataclasses import replace

        ev = self._status.status(code, message, session.audio_seconds)
        return replace(ev, stream=session.id, speaker=session.speaker)

    async def join(self, name: str, speaker: str | None = None) -> Room:
        """Open room ``name`` (RoomFull when the server holds as many rooms as it may); with a
        bus, first wait (bounded) until the room's clock, seq and recent finals are in, and
        fetch ``speaker``'s origin (they may have started on another replica)."""
        room = self.rooms.open(name)
        if room.link is not None:
            room.joining += 1  # not let go while this waits
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(room.link.ready.wait(), JOIN_WAIT_S)
                if speaker is not None:
                    await room.link.speaker_origin(speaker)
            finally:
                room.joining -= 1
        return room

    def stream_count(self) -> int:
        return len(self.sessions)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- shutdown ---------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Finish every open stream (handlers see ``stopping``), then close viewers and rooms."""
        self.stopping.set()
        deadline = asyncio.get_running_loop().time() + self.settings.close_timeout_s + 5
        while self.sessions and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)  # each handler finishes its stream and removes itself
        for ws in list(self.viewers):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"server shutting down")
        if self.bus is not None:
            await self.bus.close()
        for room in self.rooms.all:
            await asyncio.get_running_loop().run_in_executor(None, room.journal.close)


CTX = web.AppKey("ctx", ServerContext)
