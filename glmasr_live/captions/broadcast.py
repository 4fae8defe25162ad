"""Websocket broadcast of caption events, plus the OBS overlay page served by the same server.

Everything here runs on the pipeline's asyncio loop. Fan-out never awaits a subscriber: while a
client keeps up, an event is written straight into its transport (as ``websockets.broadcast``
does); only a client whose write buffer is above ``write_limit`` gets a queue of its own
(partials latest-wins, finals and status kept), drained by its own task. A client whose kept
backlog passes ``queue_size`` is cut off at once; one that stops answering pings is dropped by the
websockets keepalive. So a stuck subscriber costs the others one buffer-size check per event.

The overlay page lives in the package (``glmasr_live/web/overlay.html``, read with
``importlib.resources``) so that an installed wheel can serve it without the repository.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import secrets
import socket
from collections import deque
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from glmasr_live.captions import http
from glmasr_live.errors import ServerError
from glmasr_live.events import SCHEMA_VERSION, CaptionEvent

log = logging.getLogger(__name__)

WS_PATHS = ("/", "/ws")
OVERLAY_PATHS = ("/overlay", "/overlay/")

# What a queued message is: a partial may be replaced by a newer one, everything else is kept.
_PARTIAL, _FINAL, _KEPT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class BroadcastSettings:
    """How the caption server listens and whom it lets in.

    Fields:
        host: address to bind; anything but a loopback address needs a token (one is generated).
        port: TCP port; 0 picks a free one (tests).
        token: shared secret clients must present (``?token=`` or ``Authorization: Bearer``);
            None on loopback means no token.
        allowed_origins: extra browser origins allowed to subscribe (besides the server's own
            overlay origin), e.g. ``"null"`` for an overlay opened from a file.
        allowed_hosts: extra host names accepted in the Host header (a LAN name such as
            ``studio.local``). Loopback names and IP literals are always accepted.
        max_size: largest message a subscriber may send, bytes; bigger closes with 1009.
        backlog_finals: finals sent in the hello so that a late joiner has context.
        ping_interval: seconds between keepalive pings.
        ping_timeout: seconds without a pong before a client is dropped.
        close_timeout: seconds to wait for a closing handshake before cutting the TCP connection.
        queue_size: finals/status messages that may wait for one slow client beyond its write
            buffer; one more and the client is dropped.
        write_limit: bytes in a client's transport buffer above which it is treated as slow.
        send_buffer: kernel send buffer per client (SO_SNDBUF), bytes. Fixed, because Linux
            otherwise grows it to megabytes for a client that does not read (500 of them: GBs),
            and a stuck client would be noticed only after that much; 0 leaves it to the kernel.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_size: int = 4096
    backlog_finals: int = 10
    ping_interval: float = 10.0
    ping_timeout: float = 10.0
    close_timeout: float = 2.0
    queue_size: int = 64
    write_limit: int = 32 * 1024
    send_buffer: int = 64 * 1024


class _Subscriber:
    """One client: direct writes while it keeps up, a bounded queue when it falls behind."""

    __slots__ = ("conn", "_pending", "_kept", "_partial_queued", "_drainer", "_settings", "dropped")

    def __init__(self, conn: ServerConnection, settings: BroadcastSettings) -> None:
        self.conn = conn
        self._settings = settings
        self._pending: deque[tuple[int, bytes]] = deque()
        self._kept = 0
        self._partial_queued = False
        self._drainer: asyncio.Task[None] | None = None
        self.dropped = False

    @property
    def is_open(self) -> bool:
        return not self.dropped and self.conn.protocol.state is State.OPEN

    @property
    def draining(self) -> asyncio.Task[None] | None:
        return self._drainer

    def offer(self, data: bytes, kind: int, frame: bytes | None = None) -> bool:
        """Hand one encoded event to this client without blocking. False: the client was dropped.

        ``frame`` is ``data`` already framed (see ``http.text_frame``), shared by all clients.
        """
        conn = self.conn
        if not self.is_open:
            return True  # dropped or closing already; the handler will unregister it
        if self._drainer is None and conn.transport.get_write_buffer_size() <= self._settings.write_limit:
            try:
                conn.transport.write(frame if frame is not None else http.text_frame(data))
            except Exception as exc:  # a dead socket: drop the client, never the publisher
                self.drop(f"write failed: {exc}")
                return False
            return True
        if kind != _KEPT and self._partial_queued:
            # A newer partial, or a final that supersedes it: the queued partial is stale.
            for i, (k, _) in enumerate(self._pending):
                if k == _PARTIAL:
                    del self._pending[i]
                    break
            self._partial_queued = False
        self._pending.append((kind, data))
        if kind == _PARTIAL:
            self._partial_queued = True
        else:
            self._kept += 1
            if self._kept > self._settings.queue_size:
                self.drop(f"more than {self._settings.queue_size} messages behind")
                return False
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return True

    async def _drain(self) -> None:
        try:
            while self._pending:
                kind, data = self._pending.popleft()
                if kind == _PARTIAL:
                    self._partial_queued = False
                else:
                    self._kept -= 1
                # send() waits while the transport is above its high-water mark: only this
                # client's task waits.
                await self.conn.send(data, text=True)
        except ConnectionClosed:
            pass
        finally:
            self._drainer = None

    def drop(self, reason: str) -> None:
        self.dropped = True
        log.warning("dropping caption subscriber %s: %s", self.conn.remote_address, reason)
        self._pending.clear()
        # abort(), not close(): a stuck peer would never read the close frame queued behind
        # its backlog, and the buffered bytes would stay in memory.
        self.conn.transport.abort()

    def cancel(self) -> None:
        if self._drainer is not None:
            self._drainer.cancel()


class CaptionServer:
    """Serves caption events on ``/`` and ``/ws``, the overlay on ``/overlay``, health on ``/healthz``.

    ``start``, ``publish`` and ``close`` run on one asyncio loop; ``publish_threadsafe`` may be
    called from any thread once ``start`` has run.
    """

    def __init__(self, settings: BroadcastSettings | None = None) -> None:
        self.settings = settings or BroadcastSettings()
        s = self.settings
        self.token_generated = False
        self.token: str | None = s.token or None
        if self.token is None and not http.is_loopback(s.host):
            # Exposed beyond this machine: never without a secret.
            self.token = secrets.token_urlsafe(24)
            self.token_generated = True
        self._check = http.HostCheck(s.host, s.allowed_hosts, s.allowed_origins)
        self._clients: set[_Subscriber] = set()
        self._finals: deque[CaptionEvent] = deque(maxlen=max(0, s.backlog_finals))
        self._partial: tuple[CaptionEvent, bytes] | None = None
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._overlay = b""
        self._port = s.port
        self.published = 0
        self.dropped = 0

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        self._overlay = http.read_overlay()
        try:
            self._server = await serve(
                self._handle,
                s.host,
                s.port,
                process_request=self._process_request,
                compression=None,  # permessage-deflate costs ~100 KiB per client; captions are tiny
                max_size=s.max_size,
                ping_interval=s.ping_interval,
                ping_timeout=s.ping_timeout,
                close_timeout=s.close_timeout,
                write_limit=s.write_limit,
                server_header=None,
                backlog=1024,  # 500 overlays reconnecting at once must not overflow the SYN queue
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ServerError(
                    f"port {s.port} on {s.host} is in use; pick another with --ws HOST:PORT or --no-ws"
                ) from exc
            raise ServerError(f"cannot listen on {s.host}:{s.port}: {exc.strerror or exc}") from exc
        self._port = self._server.sockets[0].getsockname()[1]
        self._check.port = self._port
        log.info("caption server on %s (overlay %s)", self.url, self.overlay_url)

    async def close(self) -> None:
        """Flush queued finals to every client (bounded by close_timeout), then close with 1001."""
        server, self._server = self._server, None
        if server is None:
            return
        pending = [t for c in self._clients if (t := c.draining) is not None]
        if pending:
            await asyncio.wait(pending, timeout=self.settings.close_timeout)
        server.close()  # closes open connections with 1001 (going away)
        await server.wait_closed()

    # -- publishing ---------------------------------------------------------------------------

    def publish(self, event: CaptionEvent) -> None:
        """Send ``event`` to every subscriber. Event-loop thread only; never blocks."""
        data = event.to_json().encode()
        if event.type == "final":
            kind = _FINAL
            self._finals.append(event)
            if self._partial is not None and self._partial[0].utterance <= event.utterance:
                self._partial = None
        elif event.type == "partial":
            kind = _PARTIAL
            self._partial = (event, data)
        else:
            kind = _KEPT
        self.published += 1
        frame = http.text_frame(data)
        for client in self._clients:
            if not client.offer(data, kind, frame):
                self.dropped += 1

    def publish_threadsafe(self, event: CaptionEvent) -> None:
        """``publish`` from another thread (the ASR worker); dropped quietly once closed."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("CaptionServer.start() has not run")
        with contextlib.suppress(RuntimeError):  # loop closed: the session is shutting down
            loop.call_soon_threadsafe(self.publish, event)

    # -- properties ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The websocket URL, with the token when one is required."""
        return f"ws://{self._display_host()}:{self._port}/{self._token_query()}"

    @property
    def overlay_url(self) -> str:
        """The overlay URL to paste into an OBS browser source."""
        return f"http://{self._display_host()}:{self._port}/overlay{self._token_query()}"

    @property
    def subscriber_count(self) -> int:
        return sum(1 for c in self._clients if c.is_open)

    def _display_host(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    def _token_query(self) -> str:
        return f"?token={quote(self.token, safe='')}" if self.token else ""

    # -- connections --------------------------------------------------------------------------

    async def _handle(self, conn: ServerConnection) -> None:
        client = _Subscriber(conn, self.settings)
        sock = conn.transport.get_extra_info("socket")
        if self.settings.send_buffer > 0 and sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.settings.send_buffer)
        # hello (and the open partial) go out before the client joins the set: no event published
        # in between can be missed or arrive first.
        client.offer(self._hello(), _KEPT)
        if self._partial is not None:
            client.offer(self._partial[1], _PARTIAL)
        self._clients.add(client)
        try:
            async for _ in conn:  # read and discard: nothing a subscriber sends changes state
                pass
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)
            client.cancel()

    def _hello(self) -> bytes:
        hello = http.hello_message([e.to_dict() for e in self._finals])
        return json.dumps(hello, ensure_ascii=False, separators=(",", ":")).encode()

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        target = urlsplit(request.path)
        host = http.single(request.headers, "Host")
        if host is None or not self._host_allowed(host):
            return http.text(403, "forbidden: Host not allowed\n")
        method = getattr(request, "method", "GET")  # websockets >= 14 parses other methods too
        if method not in ("GET", "HEAD") or (method == "HEAD" and target.path in WS_PATHS):
            return http.text(405, f"method {method} not allowed: GET only\n")
        head = method == "HEAD"
        if target.path in OVERLAY_PATHS:
            return http.response(200, self._overlay, "text/html; charset=utf-8", overlay=True, head=head)
        if target.path == "/healthz":
            health = {
                "status": "ok",
                "v": SCHEMA_VERSION,
                "subscribers": self.subscriber_count,
                "published": self.published,
                "dropped": self.dropped,
            }
            return http.response(200, json.dumps(health).encode(), "application/json", head=head)
        if target.path not in WS_PATHS:
            return http.text(404, "not found\n")
        origin = http.single(request.headers, "Origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return http.text(403, "forbidden: Origin not allowed\n")
        if not self._token_ok(request.headers, target.query):
            return http.text(403, "forbidden: missing or wrong token\n")
        return None  # go on with the websocket handshake

    def _host_allowed(self, host_header: str) -> bool:
        return self._check.host_allowed(host_header)

    def _origin_allowed(self, origin: str, host_header: str) -> bool:
        return self._check.origin_allowed(origin, host_header)

    def _token_ok(self, headers: Headers, query: str) -> bool:
        if self.token is None:
            return True
        supplied = parse_qs(query).get("token", [None])[-1]
        if supplied is None:
            supplied = http.bearer(http.single(headers, "Authorization"))
        return http.token_matches(supplied, self.token)
