"""``WS /v1/ingest``: PCM in, the stream's caption events out, on one socket.

Query: ``encoding=s16le|f32le`` (s16le), ``sample_rate`` (16000), ``channels`` (1), ``room``
(``default``), ``name`` (generated), ``resume_at`` (seconds: this connection continues the
speaker's earlier stream from there, as the browser page does after a network drop). Binary
frames are interleaved PCM; the one text frame understood is ``{"type":"end"}``. The server
sends a ``hello`` (the stream's id, room and speaker), then caption events (schema v2), and
every ``ACK_S`` of audio an ``{"type":"ack","audio":SECONDS}``: the speaker's audio received so
far, in seconds from the start of their first connection (``resume_at`` plus what this one
received), so a client that reconnects after a drop resends from its last ack with
``resume_at`` = that ack, however many times it reconnects, and loses nothing.

Close codes: 1000 after the stream's last final (end, idle), 1001 server shutting down, 1003
text where audio was expected, 1007 a frame that is not the announced audio, 1008 a bad
parameter or audio faster than the live limit, 1009 a frame over the size limit, 1011 the
room's transcript cannot be opened (a corrupt journal), 1013 full.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMsgType, web

from glmasr_live.events import SAMPLE_RATE, CaptionEvent
from glmasr_live.server import pcm
from glmasr_live.server.context import CTX
from glmasr_live.server.rooms import DEFAULT_ROOM, BadResume, Outbox, RoomFull, RoomUnavailable, valid_room
from glmasr_live.server.sessions import StreamSession

log = logging.getLogger(__name__)

MAX_NAME = 64
ACK_S = 0.25
REFUSED = {RoomFull: 1013, BadResume: 1008, RoomUnavailable: 1011}
"""The close code of a stream the server cannot open (a full room, a bad ``resume_at``, a room
whose transcript cannot be opened)."""


class BadRequest(ValueError):
    """A query parameter that cannot be used; the message is the close reason."""


@dataclass(frozen=True)
class IngestParams:
    encoding: str
    sample_rate: int
    channels: int
    room: str
    name: str
    resume_at: float | None

    @classmethod
    def parse(cls, q: Any) -> IngestParams:
        encoding = q.get("encoding", "s16le")
        if encoding not in pcm.ENCODINGS:
            raise BadRequest(f"encoding={encoding[:20]!r} is not one of {', '.join(pcm.ENCODINGS)}")
        rate = _int(q, "sample_rate", SAMPLE_RATE, 1000, 768_000)
        channels = _int(q, "channels", 1, 1, 64)
        room = q.get("room", DEFAULT_ROOM)
        if not valid_room(room):
            raise BadRequest(
                "room must be 1-64 letters, digits, '_', '-' or '.', starting with a letter or digit"
            )
        name = " ".join(q.get("name", "").split())
        if len(name) > MAX_NAME or any(not ch.isprintable() for ch in name):
            raise BadRequest(f"name must be at most {MAX_NAME} printable characters")
        resume_at = None
        if "resume_at" in q:
            try:
                resume_at = float(q["resume_at"])
            except ValueError:
                resume_at = -1.0
            if not (math.isfinite(resume_at) and resume_at >= 0):
                raise BadRequest("resume_at must be seconds, 0 or more")
        return cls(encoding, rate, channels, room, name or f"speaker-{secrets.token_hex(2)}", resume_at)


def _int(q: Any, key: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = lo - 1
    if not lo <= value <= hi:
        raise BadRequest(f"{key} must be a whole number from {lo} to {hi}")
    return value


async def close(ws: web.WebSocketResponse, code: int, reason: str) -> None:
    # A close reason may carry at most 123 bytes.
    await ws.close(code=code, message=reason.encode()[:123])


HARD_LIMIT_FACTOR = 16
"""The websocket library's own message limit, in ``max_frame_bytes``: it closes the socket by
itself (no final sent, no say of ours) and so is set far above the limit the handlers enforce."""


class LiveSocket(web.WebSocketResponse):
    """A live stream's socket. A message over ``limit`` is refused by the handler, which can
    still finish the open utterance and send its final before closing with 1009 and a reason;
    only one over the library's own limit (``HARD_LIMIT_FACTOR`` × more, too large to hold)
    is cut by the library at once, and that close gets a reason too."""

    def __init__(self, limit: int) -> None:
        super().__init__(max_msg_size=limit * HARD_LIMIT_FACTOR, heartbeat=20.0)
        self.limit = limit

    async def close(self, *, code: int = 1000, message: bytes = b"", drain: bool = True) -> bool:
        if code == 1009 and not message:
            message = f"frame over {self.limit} bytes".encode()
        return await super().close(code=code, message=message, drain=drain)


def oversized(msg: Any, limit: int) -> bool:
    """Whether a text or binary message is over ``limit`` bytes (text counted as UTF-8)."""
    data = msg.data
    if isinstance(data, str):
        return len(data) > limit or (len(data) * 4 > limit and len(data.encode("utf-8")) > limit)
    return len(data) > limit


async def handle(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "publish")
    if refused is not None:
        return refused
    ws = LiveSocket(ctx.settings.max_frame_bytes)
    await ws.prepare(request)
    try:
        params = IngestParams.parse(request.query)
        decoder = pcm.PcmDecoder(params.encoding, params.channels)
    except (BadRequest, pcm.FrameError) as exc:
        await close(ws, 1008, str(exc))
        return ws
    if ctx.stopping.is_set():
        await close(ws, 1001, "server shutting down")
        return ws
    outbox = Outbox(ws.send_str, ctx.settings.viewer_queue, lambda why: _abort(ws, why))

    def deliver(ev: CaptionEvent) -> None:
        outbox.offer(ev.to_json(), "partial" if ev.type == "partial" else None)  # status kept

    try:
        await ctx.join(params.room, params.name)  # with a bus: the room's shared state first
        session = StreamSession.open(
            ctx, params.room, params.name, params.sample_rate, params.channels, params.resume_at, deliver
        )
    except (RoomFull, BadResume, RoomUnavailable) as exc:  # RoomUnavailable: the room logged it
        if (room := ctx.rooms.get(params.room)) is not None:
            ctx.rooms.release(room)  # opened by join, if no one else is in it
        await close(ws, REFUSED[type(exc)], str(exc))
        return ws
    ctx.sessions.add(session)
    hello = ctx.hello(session.room, stream=session.id, speaker=session.speaker, finals=False)
    hello["offset"] = round(session.offset, 6)  # where this stream's second 0 sits on the room clock
    outbox.offer(json.dumps(hello, ensure_ascii=False, separators=(",", ":")))
    code, reason = 1000, "end of stream"
    try:
        code, reason = await _receive(ws, ctx, session, decoder, params, outbox)
    finally:
        # Whatever ended the socket, the open utterance's final is computed, journaled, sent.
        await session.finish(ctx.settings.close_timeout_s)
        ctx.sessions.discard(session)
        if session.journal_error:
            session.room.publish(ctx.status(session, "transcript_error", session.journal_error), 0, deliver)
        await outbox.flush(ctx.settings.close_timeout_s)
        if not ws.closed:
            await close(ws, code, reason)
    return ws


async def _receive(ws: web.WebSocketResponse, ctx: Any, session: StreamSession,
                   decoder: pcm.PcmDecoder, params: IngestParams, outbox: Outbox) -> tuple[int, str]:  # fmt: skip
    """Feed the socket's audio until it ends; the close code and reason to answer with."""
    s = ctx.settings
    pace = pcm.Pace(s.max_speed, s.burst_s)
    acked = 0.0
    rate, base = params.sample_rate, params.resume_at or 0.0
    stop = asyncio.ensure_future(ctx.stopping.wait())
    try:
        while True:
            recv = asyncio.ensure_future(ws.receive())
            done, _ = await asyncio.wait({recv, stop}, timeout=s.idle_s, return_when=asyncio.FIRST_COMPLETED)
            if recv not in done:
                recv.cancel()
                if stop in done:
                    return 1001, "server shutting down"
                return 1000, f"idle: no audio for {s.idle_s:g} s"
            msg = recv.result()
            if msg.type in (WSMsgType.BINARY, WSMsgType.TEXT) and oversized(msg, s.max_frame_bytes):
                return 1009, f"frame over {s.max_frame_bytes} bytes"
            if msg.type == WSMsgType.BINARY:
                try:
                    samples = decoder.decode(msg.data)
                except pcm.FrameError as exc:
                    return 1007, str(exc)
                if not pace.add(len(samples) / rate, time.monotonic()):
                    return 1008, (
                        f"audio faster than {s.max_speed:g}x real time; send files to POST /v1/audio/transcriptions"
                    )
                session.feed(samples)
                session.room.hear(session.speaker, base + pace.audio_s)
                if pace.audio_s - acked >= ACK_S:
                    acked = pace.audio_s
                    outbox.offer(
                        json.dumps({"type": "ack", "audio": round(base + acked, 4)}, separators=(",", ":")),
                        "ack",
                    )
            elif msg.type == WSMsgType.TEXT:
                if _is_end(msg.data):
                    return 1000, "end of stream"
                return 1003, 'expected binary PCM frames; the only text frame is {"type":"end"}'
            elif msg.type == WSMsgType.ERROR:
                problem = str(ws.exception()).lower()
                if "too big" in problem or "size" in problem:
                    return 1009, f"frame over {s.max_frame_bytes} bytes"
                return 1002, "protocol error"
            else:  # CLOSE, CLOSING, CLOSED: the client went away
                return 1000, "closed by client"
    finally:
        stop.cancel()


def _is_end(data: str) -> bool:
    try:
        msg = json.loads(data)
    except ValueError:
        return False
    return isinstance(msg, dict) and msg.get("type") == "end"


def _abort(ws: web.WebSocketResponse, why: str) -> None:
    log.warning("closing a client that fell behind: %s", why)
    asyncio.get_running_loop().create_task(close(ws, 1008, f"too slow: {why}"))
