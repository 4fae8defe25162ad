"""``WS /v1/realtime``: vLLM's realtime transcription protocol, on the shared model.

A client written for vLLM's ``/v1/realtime`` works unchanged: JSON text events both ways, audio
as base64 PCM16 mono 16 kHz. Query: ``room`` (``default``) and ``name`` (generated), as on
``/v1/ingest``; every connection is a stream of that room (viewers see it, its finals are
journaled).

Client events: ``session.update`` (``model`` optional here; another model's name is an error;
answered with ``session.updated``), ``input_audio_buffer.append`` (``audio``), and
``input_audio_buffer.commit``: with ``"final": true`` it ends the audio of the current
transcription; without it, it only marks the start (what vLLM's clients send first: audio is
listened to from the first append either way, and utterances are ended by the server's VAD).

Server events: ``session.created`` first (``id``, ``created``), ``transcription.delta`` with
text that is *committed* (never revised: the deltas are append-only, utterances joined with a
space, none between CJK), and after a final commit the rest of the text and one
``transcription.done`` whose ``text`` is exactly the concatenation of that transcription's
deltas. The connection stays open: the next append or commit starts a new transcription (a new
stream in the room). A bad event is answered with ``{"type":"error","error":...,"code":...}``
(``invalid_json``, ``invalid_event``, ``invalid_audio``, ``unknown_event``,
``model_not_found``, ``processing_error``) and the connection goes on; ``transcript_error``
after a ``done`` says its finals could not be journaled.

Whatever ends the connection, the open utterance is finished, its text sent as deltas and a
``transcription.done`` follows before the close. Close codes: 1000 client or idle, 1001 server
shutting down, 1002 a websocket protocol error, 1003 a binary frame (audio goes base64 in
``append``), 1008 a bad parameter or audio faster than the live limit (``too_fast``), 1009 a
message over the size limit, 1011 the room's transcript cannot be opened (``transcript_error``),
1013 full (``server_full``). The fatal ones are announced with an
``error`` event first (vLLM's clients read events, not close reasons).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import secrets
import time
from typing import Any

from aiohttp import WSMsgType, web

from glmasr_live.events import SAMPLE_RATE, CaptionEvent, join_text
from glmasr_live.server import pcm
from glmasr_live.server.context import CTX
from glmasr_live.server.ingest import BadRequest, IngestParams, LiveSocket, close, oversized
from glmasr_live.server.rooms import Outbox, RoomFull, RoomUnavailable
from glmasr_live.server.sessions import StreamSession

log = logging.getLogger(__name__)


class Fatal(Exception):
    """Ends the connection: the close code and reason, and the error event's code (if any)."""

    def __init__(self, close_code: int, reason: str, error_code: str | None = None) -> None:
        super().__init__(reason)
        self.close_code, self.reason, self.error_code = close_code, reason, error_code


class Transcript:
    """One transcription's text as the protocol sends it: only committed text, append-only.

    Our partials carry ``committed`` text (never changes again) and a final carries the whole
    utterance; each is a prefix of what follows in its utterance, so the new part is the delta.
    """

    def __init__(self) -> None:
        self.text = ""
        self._utterance: int | None = None
        self._sent = ""  # the current utterance's text sent so far

    def delta(self, ev: CaptionEvent) -> str:
        """The text ``ev`` adds ("" for none); ``self.text`` grows by exactly that."""
        if ev.type == "status":
            return ""
        if ev.utterance != self._utterance:
            self._utterance, self._sent = ev.utterance, ""
        new = (ev.text if ev.type == "final" else ev.committed).strip()
        if not new.startswith(self._sent):
            # Sent text cannot be taken back; the journal keeps the true final.
            log.warning("utterance %s: final %r does not extend %r", ev.utterance, new, self._sent)
            return ""
        piece = new[len(self._sent) :]
        if not piece:
            return ""
        joined = join_text(self.text, piece) if not self._sent else self.text + piece
        out = joined[len(self.text) :]
        self.text, self._sent = joined, new
        return out


def served_model(ctx: Any) -> str:
    return str(getattr(ctx.captioner.engine, "model_name", "") or "glmasr-live")


def _known_model(ctx: Any, model: object) -> bool:
    name = served_model(ctx)
    return isinstance(model, str) and model in (name, name.rsplit("/", 1)[-1])


async def handle(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "publish")
    if refused is not None:
        return refused
    ws = LiveSocket(ctx.settings.max_frame_bytes)
    await ws.prepare(request)
    try:
        # Only room and name mean something here; the audio format is fixed by the protocol.
        q = request.query
        params = IngestParams.parse({k: q[k] for k in ("room", "name") if k in q})
    except BadRequest as exc:
        await close(ws, 1008, str(exc))
        return ws
    if ctx.stopping.is_set():
        await close(ws, 1001, "server shutting down")
        return ws
    conn = Connection(ctx, ws, params.room, params.name)
    try:
        conn.start()
    except RoomFull as exc:
        await close(ws, 1013, str(exc))
        return ws
    except RoomUnavailable as exc:  # logged once by the room; the client gets the reason
        await close(ws, 1011, str(exc))
        return ws
    conn.send(
        {
            "type": "session.created",
            "id": conn.id,
            "created": int(time.time()),
            "room": params.room,
            "speaker": params.name,
        }
    )
    code, reason = 1000, "closed by client"
    try:
        code, reason = await conn.receive()
    except Fatal as exc:
        code, reason = exc.close_code, exc.reason
        if exc.error_code is not None:
            conn.error(exc.reason, exc.error_code)
    finally:
        # Whatever ended the socket, the open utterance is finished and its text sent.
        await conn.done()
        await conn.outbox.flush(ctx.settings.close_timeout_s)
        if not ws.closed:
            await close(ws, code, reason)
    return ws


class Connection:
    """One realtime socket: its current transcription (a ``StreamSession``) and its events."""

    def __init__(self, ctx: Any, ws: web.WebSocketResponse, room: str, name: str) -> None:
        self.ctx, self.ws, self.room, self.name = ctx, ws, room, name
        self.id = f"sess-{secrets.token_hex(12)}"
        self.outbox = Outbox(ws.send_str, ctx.settings.viewer_queue, self._abort)
        self.session: StreamSession | None = None
        self.transcript = Transcript()
        self.pace = pcm.Pace(ctx.settings.max_speed, ctx.settings.burst_s)
        self.decoder = pcm.PcmDecoder("s16le", 1)

    def send(self, event: dict[str, Any]) -> None:
        self.outbox.offer(json.dumps(event, ensure_ascii=False))

    def error(self, message: str, code: str) -> None:
        self.send({"type": "error", "error": message, "code": code})

    # -- transcriptions -----------------------------------------------------------------

    def start(self) -> None:
        """Open a stream for a new transcription (RoomFull when a limit says no)."""
        transcript = Transcript()

        def deliver(ev: CaptionEvent) -> None:
            # Bound to this transcription: a later one starts from empty text.
            delta = transcript.delta(ev)
            if delta:
                self.send({"type": "transcription.delta", "delta": delta})

        self.session = StreamSession.open(self.ctx, self.room, self.name, SAMPLE_RATE, 1, None, deliver)
        self.transcript = transcript
        self.ctx.sessions.add(self.session)

    def _ensure_started(self) -> StreamSession:
        if self.session is None:
            if self.ctx.stopping.is_set():
                raise Fatal(1001, "server shutting down")
            try:
                self.start()
            except RoomFull as exc:
                raise Fatal(1013, str(exc), "server_full") from exc
            except RoomUnavailable as exc:
                raise Fatal(1011, str(exc), "transcript_error") from exc
        assert self.session is not None
        return self.session

    async def done(self) -> None:
        """End the current transcription: its last final, the rest of its text, ``done``."""
        session, self.session = self.session, None
        if session is None:
            return
        try:
            await session.finish(self.ctx.settings.close_timeout_s)
        finally:
            self.ctx.sessions.discard(session)
        # usage: vLLM counts tokens; a null usage is what its clients accept besides that.
        self.send({"type": "transcription.done", "text": self.transcript.text, "usage": None})
        if session.journal_error:
            self.error(f"transcript not saved: {session.journal_error}", "transcript_error")

    # -- the socket ---------------------------------------------------------------------

    async def receive(self) -> tuple[int, str]:
        """Handle events until the socket ends; the close code and reason (Fatal: at once)."""
        s = self.ctx.settings
        stop = asyncio.ensure_future(self.ctx.stopping.wait())
        try:
            while True:
                recv = asyncio.ensure_future(self.ws.receive())
                done, _ = await asyncio.wait(
                    {recv, stop}, timeout=s.idle_s, return_when=asyncio.FIRST_COMPLETED
                )
                if recv not in done:
                    recv.cancel()
                    if stop in done:
                        return 1001, "server shutting down"
                    return 1000, f"idle: no events for {s.idle_s:g} s"
                msg = recv.result()
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY) and oversized(msg, s.max_frame_bytes):
                    raise Fatal(1009, f"message over {s.max_frame_bytes} bytes", "invalid_event")
                if msg.type == WSMsgType.TEXT:
                    await self.on_text(msg.data)
                elif msg.type == WSMsgType.BINARY:
                    raise Fatal(
                        1003,
                        "expected JSON text events; audio goes base64 in input_audio_buffer.append",
                        "invalid_event",
                    )
                elif msg.type == WSMsgType.ERROR:
                    problem = str(self.ws.exception()).lower()
                    if "too big" in problem or "size" in problem:
                        raise Fatal(1009, f"message over {s.max_frame_bytes} bytes", "invalid_event")
                    return 1002, "protocol error"
                else:  # CLOSE, CLOSING, CLOSED: the client went away
                    return 1000, "closed by client"
        finally:
            stop.cancel()

    async def on_text(self, data: str) -> None:
        try:
            event = json.loads(data)
        except (ValueError, RecursionError):
            self.error("Invalid JSON", "invalid_json")
            return
        if not isinstance(event, dict):
            self.error("an event must be a JSON object", "invalid_event")
            return
        kind = event.get("type")
        try:
            if kind == "input_audio_buffer.append":
                self.append(event.get("audio"))
            elif kind == "input_audio_buffer.commit":
                await self.commit(event.get("final", False))
            elif kind == "session.update":
                self.update(event.get("model"))
            else:
                self.error(f"Unknown event type: {str(kind)[:64]}", "unknown_event")
        except Fatal:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad event must not end the others' streams
            log.exception("realtime event %s failed", str(kind)[:64])
            self.error(str(exc), "processing_error")

    def append(self, audio: object) -> None:
        if not isinstance(audio, str):
            self.error("input_audio_buffer.append needs `audio`: base64 PCM16 mono 16 kHz", "invalid_audio")
            return
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            self.error("Invalid audio data: `audio` is not base64", "invalid_audio")
            return
        if not raw:
            self.error("Can't process empty audio.", "invalid_audio")
            return
        try:
            samples = self.decoder.decode(raw)
        except pcm.FrameError as exc:
            self.error(f"Invalid audio data: {exc}", "invalid_audio")
            return
        s = self.ctx.settings
        if not self.pace.add(len(samples) / SAMPLE_RATE, time.monotonic()):
            raise Fatal(
                1008,
                f"audio faster than {s.max_speed:g}x real time; send files to POST /v1/audio/transcriptions",
                "too_fast",
            )
        self._ensure_started().feed(samples)

    async def commit(self, final: object) -> None:
        if not isinstance(final, bool):
            self.error("`final` must be true or false", "invalid_event")
        elif final and self.session is None:
            # Nothing open (two final commits in a row): still the answer a client waits for.
            self.send({"type": "transcription.done", "text": "", "usage": None})
        elif final:
            await self.done()
        elif self.session is not None and self.session.stream.audio_seconds > 0:
            self.session.stream.cut()  # push-to-talk: the open utterance ends at the commit
        else:
            # The start of a transcription (vLLM's clients send it before any audio).
            self._ensure_started()

    def update(self, model: object) -> None:
        if model is not None and not _known_model(self.ctx, model):
            self.error(f"The model `{str(model)[:100]}` does not exist.", "model_not_found")
            return
        self.send({"type": "session.updated", "model": served_model(self.ctx)})

    def _abort(self, why: str) -> None:
        log.warning("closing a realtime client that fell behind: %s", why)
        asyncio.get_running_loop().create_task(close(self.ws, 1008, f"too slow: {why}"))
