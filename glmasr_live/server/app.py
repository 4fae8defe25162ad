"""The server: one aiohttp application, one ``Captioner`` (one model), its lifecycle.

``ServerContext`` is what every endpoint handler reaches (``request.app["ctx"]``): settings,
access rules, rooms, the captioner, the open stream sessions and viewers, and the stop signal.
``run_server`` binds, serves until SIGTERM/SIGINT, then shuts down in order: new streams are
refused, every open stream's utterance is finished (final computed, journaled, sent), every
client is closed with 1001, every transcript is flushed and closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from glmasr_live import __version__
from glmasr_live.captioning import CaptionBuilder
from glmasr_live.errors import ServerError
from glmasr_live.events import SCHEMA_VERSION, CaptionEvent
from glmasr_live.server.access import Access, Role
from glmasr_live.server.rooms import Room, Rooms
from glmasr_live.server.settings import ServerSettings

log = logging.getLogger(__name__)


class ServerContext:
    def __init__(self, settings: ServerSettings, captioner: Any) -> None:
        self.settings = settings
        self.captioner = captioner
        self.access = Access(
            settings.host, settings.publish_token, settings.view_token,
            settings.allowed_hosts, settings.allowed_origins,
        )  # fmt: skip
        self.rooms = Rooms(settings.transcripts_dir, settings.backlog_finals, settings.max_rooms)
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
        for room in self.rooms.all:
            await asyncio.get_running_loop().run_in_executor(None, room.journal.close)


def build_app(ctx: ServerContext) -> web.Application:
    from glmasr_live.server import feeds, ingest, pages, realtime, transcriptions

    app = web.Application(client_max_size=ctx.settings.max_upload_bytes)
    app["ctx"] = ctx
    routes: list[tuple[str, str, Callable[[web.Request], Awaitable[web.StreamResponse]]]] = [
        ("GET", "/healthz", health),
        ("GET", "/v1/ingest", ingest.handle),
        ("GET", "/v1/realtime", realtime.handle),
        ("POST", "/v1/audio/transcriptions", transcriptions.handle),
        ("GET", "/v1/models", transcriptions.models),
        ("GET", "/v1/rooms/{room}/captions", feeds.captions),
        ("GET", "/v1/rooms/{room}/transcript.{fmt}", feeds.transcript),
        *pages.ROUTES,
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
    return app


async def health(request: web.Request) -> web.Response:
    ctx: ServerContext = request.app["ctx"]
    why = ctx.access.browser_ok(request.headers)
    if why is not None:
        return ctx.text(403, f"forbidden: {why}")
    # Counts only: no room names (someone without a view token may read this).
    return web.json_response({
        "status": "stopping" if ctx.stopping.is_set() else "ok", "v": SCHEMA_VERSION,
        "streams": ctx.stream_count(), "rooms": len(ctx.rooms.all), "viewers": len(ctx.viewers),
        "model": getattr(ctx.captioner.engine, "model_name", ""),
    })  # fmt: skip


async def serve(ctx: ServerContext, ready: Callable[[ServerContext], None] | None = None,
                ssl_context: ssl.SSLContext | None = None) -> None:  # fmt: skip
    """Serve until ``ctx.stopping`` is set (SIGTERM/SIGINT set it), then shut down in order."""
    runner = web.AppRunner(build_app(ctx), handle_signals=False, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, ctx.settings.host, ctx.settings.port, ssl_context=ssl_context, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ServerError(
            f"cannot listen on {ctx.settings.host}:{ctx.settings.port}: {exc.strerror or exc}"
        ) from exc
    ctx.port = int(runner.addresses[0][1])
    ctx.access.check.port = ctx.port
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(ctx)
    try:
        await asyncio.wait(
            [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(ctx.stopping.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        await ctx.shutdown()
    finally:
        await runner.cleanup()


def announce(ctx: ServerContext, out: Any = None) -> None:
    """The lines a user needs: where to point a browser, OBS and clients; generated tokens."""
    out = out or sys.stderr
    s = ctx.settings
    host = "127.0.0.1" if s.host in ("0.0.0.0", "::", "") else s.host
    base = f"http://{host}:{ctx.port}"
    pub = f"&token={ctx.access.publish_token}" if ctx.access.publish_token else ""
    view = f"&token={ctx.access.view_token}" if ctx.access.view_token else ""
    print(f"glmasr-live serve: listening on {base} (model {ctx.captioner.engine.model_name})", file=out)
    print(f"  microphone page: {base}/mic?room=default&name=Alice{pub}", file=out)
    print(f"  room page:       {base}/rooms/default?{view.lstrip('&')}".rstrip("?"), file=out)
    print(f"  OBS overlay:     {base}/overlay?room=default{view}", file=out)
    if ctx.access.generated:
        tokens = f"publish={ctx.access.publish_token} view={ctx.access.view_token}"
        print(f"  generated tokens: {tokens}", file=out)
    print(f"  audio in:        ws://{host}:{ctx.port}/v1/ingest?room=default&name=Bob{pub}", file=out)
    out.flush()
