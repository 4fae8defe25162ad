"""The server: one aiohttp application, one ``Captioner`` (one model), its lifecycle.

Every endpoint handler reaches the ``ServerContext`` (``server/context.py``) as
``request.app[CTX]``. ``serve`` binds, serves until SIGTERM/SIGINT, then shuts down in order: new streams are
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
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from glmasr_live.errors import ServerError
from glmasr_live.events import SCHEMA_VERSION
from glmasr_live.server.context import CTX, ServerContext

log = logging.getLogger(__name__)


def build_app(ctx: ServerContext) -> web.Application:
    from glmasr_live.server import feeds, ingest, pages, realtime, transcriptions

    app = web.Application(client_max_size=ctx.settings.max_upload_bytes)
    app[CTX] = ctx
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
    ctx = request.app[CTX]
    why = ctx.access.browser_ok(request.headers)
    if why is not None:
        return ctx.text(403, f"forbidden: {why}")
    # Counts only: no room names (someone without a view token may read this).
    return web.json_response({
        "status": "stopping" if ctx.stopping.is_set() else "ok", "v": SCHEMA_VERSION,
        "streams": ctx.stream_count(), "rooms": len(ctx.rooms.all), "viewers": len(ctx.viewers),
        "model": getattr(ctx.captioner.engine, "model_name", ""), "lag": _lag(ctx),
        "bus": ctx.bus.state if ctx.bus is not None else "off",
    })  # fmt: skip


def _lag(ctx: ServerContext) -> float:
    """Seconds the most lagging open stream's captions trail its audio (as of its last step; 0
    with none): a replica whose model no longer keeps up shows it here before viewers complain."""
    lags = [s.stream.stats.lag_s for s in list(ctx.sessions) if s.stream is not None]
    return round(max(lags, default=0.0), 3)


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
    if ctx.bus is not None:
        ctx.bus.start()
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
    if s.bus:
        from glmasr_live.server.bus import redacted

        print(f"  room bus:        {redacted(s.bus)} (rooms shared with other replicas)", file=out)
    print(f"  audio in:        ws://{host}:{ctx.port}/v1/ingest?room=default&name=Bob{pub}", file=out)
    out.flush()
