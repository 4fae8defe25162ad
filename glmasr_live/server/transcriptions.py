"""``POST /v1/audio/transcriptions`` (OpenAI-compatible file transcription) and ``GET /v1/models``.

A multipart upload: ``file`` (required), ``model`` (any string; the answer names the served
model), ``response_format`` (json, text, srt, vtt, verbose_json), ``language``, ``prompt``,
``temperature`` and ``timestamp_granularities[]``. The file goes to a temporary file as it
arrives (never more than ``max_upload_bytes``), is decoded with ``load_audio``, cut into pieces
(``glmasr_live.pieces``) and each piece is one job on the model's thread (``Captioner.submit``):
jobs run only when no live stream has work due, so a file never delays live captions.

What GLM-ASR cannot do is said, not faked: ``prompt`` is ignored (GLM-ASR's text slot is the
instruction, not context: a Whisper-style prompt there changes the task; the server's
instruction is ``--prompt``); ``language`` is not passed to the model (it takes no language
hint) and is only echoed in verbose_json; decoding is greedy (temperature 0 whatever was asked);
there are no word timestamps, log-probabilities or no-speech probabilities.

Errors are OpenAI's JSON shape: ``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web

from glmasr_live import pieces
from glmasr_live.errors import AudioInputError
from glmasr_live.server.context import CTX

log = logging.getLogger(__name__)

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("segment", "word")
MAX_FIELD_BYTES = 64 << 10  # a text field (prompt, model...): far more than any real one
CHUNK = 1 << 16


class ApiError(Exception):
    """An answer other than the transcript: status, message, and which field was at fault."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def response(self) -> web.Response:
        kind = "server_error" if self.status >= 500 else "invalid_request_error"
        body = {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}
        return web.json_response(body, status=self.status, headers={"Cache-Control": "no-store"})


def _shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down; try again later", None, "server_shutting_down")


@dataclass(frozen=True)
class Options:
    """The request's fields other than the file, checked."""

    response_format: str = "json"
    language: str | None = None
    granularities: tuple[str, ...] = ("segment",)

    @classmethod
    def parse(cls, fields: dict[str, list[str]]) -> Options:
        def one(name: str) -> str | None:
            values = fields.get(name)
            return values[-1].strip() if values else None

        fmt = one("response_format") or "json"
        if fmt not in FORMATS:
            raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}", "response_format",
                           "invalid_value")  # fmt: skip
        temperature = one("temperature")
        if temperature:
            try:
                t = float(temperature)
            except ValueError:
                t = math.nan
            if not 0.0 <= t <= 1.0:
                raise ApiError(
                    400, "temperature must be a number from 0 to 1", "temperature", "invalid_value"
                )
        wanted = tuple(
            fields.get("timestamp_granularities[]", []) + fields.get("timestamp_granularities", [])
        )
        bad = [g for g in wanted if g not in GRANULARITIES]
        if bad:
            raise ApiError(400, "timestamp_granularities[] takes segment and/or word",
                           "timestamp_granularities[]", "invalid_value")  # fmt: skip
        if (one("stream") or "false").lower() not in ("false", "0", ""):
            raise ApiError(400, "streamed transcription is not supported; send stream=false", "stream",
                           "unsupported_value")  # fmt: skip
        return cls(fmt, one("language") or None, wanted or ("segment",))


@dataclass
class Upload:
    """What the multipart body held: the file (in ``path``), its name, the text fields."""

    path: Path
    filename: str = "file"
    received: bool = False
    size: int = 0
    fields: dict[str, list[str]] = field(default_factory=dict)


async def handle(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "publish")
    if refused is not None:
        return ApiError(refused.status, (refused.text or "forbidden").strip(), None, "forbidden").response()
    if ctx.stopping.is_set():
        return _shutting_down().response()
    fd, name = tempfile.mkstemp(prefix="glmasr-upload-")
    os.close(fd)
    upload = Upload(Path(name))
    try:
        await _read_form(request, upload, ctx.settings.max_upload_bytes)
        opts = Options.parse(upload.fields)
        audio = await _decode(upload)
        result = await _transcribe(ctx, request, audio)
        return _answer(result, opts, ctx.captioner.engine.model_name)
    except ApiError as exc:
        return exc.response()
    except ConnectionError:
        return web.Response(status=499)  # the client went away mid-upload: nobody reads this
    except Exception:  # noqa: BLE001 - a request must never take the server down
        log.exception("file transcription failed")
        return ApiError(500, "the transcription failed on the server", None, "internal_error").response()
    finally:
        upload.path.unlink(missing_ok=True)


async def _read_form(request: web.Request, upload: Upload, limit: int) -> None:
    """Stream the multipart body: the file to ``upload.path``, fields to memory, all bounded."""
    too_big = ApiError(413, f"the upload is over the server's limit of {limit} bytes", "file",
                       "file_too_large")  # fmt: skip
    if request.content_length is not None and request.content_length > limit:
        raise too_big  # refused before reading: aiohttp drains (bounded) what the client still sends
    if request.content_type != "multipart/form-data":
        raise ApiError(
            400, "send the file as multipart/form-data (a 'file' field)", None, "invalid_content_type"
        )
    try:
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise ApiError(400, "nested multipart bodies are not accepted", None, "invalid_multipart")
            if part.name == "file":
                await _save_file(part, upload, limit, too_big)
            else:
                await _save_field(part, upload, limit, too_big)
    except ApiError:
        raise
    except ConnectionError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever a malformed body makes aiohttp raise
        raise ApiError(
            400, f"malformed multipart body ({type(exc).__name__})", None, "invalid_multipart"
        ) from exc
    if not upload.received:
        raise ApiError(400, "the 'file' field is required (the audio to transcribe)", "file", "missing_file")


async def _save_file(part: BodyPartReader, upload: Upload, limit: int, too_big: ApiError) -> None:
    if upload.received:
        raise ApiError(400, "send one 'file' per request", "file", "invalid_value")
    upload.received = True
    upload.filename = _display_name(part.filename)
    # Plain writes of 64 KiB to a fresh temp file land in the page cache: microseconds, so they
    # stay on the event loop rather than paying a thread hop per chunk.
    with upload.path.open("wb") as out:
        while chunk := await part.read_chunk(CHUNK):
            upload.size += len(chunk)
            if upload.size > limit:
                raise too_big
            try:
                out.write(chunk)
            except OSError as exc:  # the server's disk, not the client's body, is at fault
                log.error("cannot store an upload in %s: %s", upload.path.parent, exc)
                raise ApiError(
                    507, "the server has no room to store the upload", None, "storage_full"
                ) from None


async def _save_field(part: BodyPartReader, upload: Upload, limit: int, too_big: ApiError) -> None:
    name = part.name or ""
    data = bytearray()
    while chunk := await part.read_chunk(CHUNK):
        upload.size += len(chunk)
        data += chunk
        if upload.size > limit:
            raise too_big
        if len(data) > MAX_FIELD_BYTES:
            raise ApiError(
                400, f"field {name[:40]!r} is over {MAX_FIELD_BYTES} bytes", name[:40], "invalid_value"
            )
    try:
        upload.fields.setdefault(name, []).append(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, f"field {name[:40]!r} is not UTF-8 text", name[:40], "invalid_value") from None


def _display_name(filename: str | None) -> str:
    # The client's name for the file goes into error messages: printable, short, no path.
    base = re.sub(r"[^\w .()+-]", "_", Path(filename or "file").name)[:80]
    return base or "file"


async def _decode(upload: Upload) -> Any:
    from glmasr_live.audio.decode import load_audio

    try:
        return await asyncio.get_running_loop().run_in_executor(None, load_audio, upload.path)
    except AudioInputError as exc:
        # load_audio names the file it read: the client's name, never the server's temp path.
        message = str(exc).replace(str(upload.path), upload.filename)
        raise ApiError(400, message, "file", "invalid_audio") from None


async def _transcribe(ctx: Any, request: web.Request, audio: Any) -> pieces.FileTranscript:
    """Cut the audio into pieces; each piece is one model job, queued behind live streams."""
    from glmasr_live.events import SAMPLE_RATE

    engine = ctx.captioner.engine
    loop = asyncio.get_running_loop()
    cut = await loop.run_in_executor(None, pieces.cut, audio, engine.window_samples,
                                     ctx.captioner.segmenter_settings)  # fmt: skip

    def model(clip: Any, cap: int) -> pieces.Heard:
        return engine.transcribe([clip], max_new_tokens=cap)[0]

    segments = []
    for piece in cut:
        if ctx.stopping.is_set():
            raise _shutting_down()
        if request.transport is None or request.transport.is_closing():
            raise ApiError(499, "the client went away", None, "client_closed")  # nobody reads it
        job = functools.partial(pieces.run_piece, model, engine.max_new_tokens, audio, piece)
        future = ctx.captioner.submit(job)
        try:
            segments.append(await asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # The scheduler cancels queued jobs when it stops; our own cancellation propagates.
            task = asyncio.current_task()
            if future.cancelled() and task is not None and not task.cancelling():
                raise _shutting_down() from None
            raise
    return pieces.assemble(segments, len(audio) / SAMPLE_RATE)


def _answer(result: pieces.FileTranscript, opts: Options, model_name: str) -> web.Response:
    from glmasr_live.captions.cues import make_cues, render_srt, render_vtt

    headers = {"Cache-Control": "no-store", "X-Model": model_name}
    fmt = opts.response_format
    if fmt == "text":
        return web.Response(text=result.text + "\n", content_type="text/plain", headers=headers)
    if fmt == "srt":
        return web.Response(text=render_srt(make_cues(result.segments)), content_type="application/x-subrip",
                            headers=headers)  # fmt: skip
    if fmt == "vtt":
        return web.Response(
            text=render_vtt(make_cues(result.segments)), content_type="text/vtt", headers=headers
        )
    usage = {"type": "duration", "seconds": math.ceil(result.duration)}
    if fmt == "json":
        return web.json_response({"text": result.text, "usage": usage}, headers=headers)
    return web.json_response(_verbose(result, opts, usage), headers=headers)


def _verbose(result: pieces.FileTranscript, opts: Options, usage: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task": "transcribe",
        # GLM-ASR detects no language: the client's own hint, else honestly unknown.
        "language": opts.language or "unknown",
        "duration": result.duration,
        "text": result.text,
    }
    # Segments whatever the granularities asked for: they are what verbose_json is read for,
    # and a client asking for words as well must not lose them. "word": GLM-ASR gives no word
    # timings, so ``words`` is left out rather than invented (a piece's times are all we have).
    body["segments"] = [_segment(s) for s in result.segments]
    body["usage"] = usage
    return body


def _segment(s: pieces.Segment) -> dict[str, Any]:
    # avg_logprob and no_speech_prob are left out: the engine computes neither.
    return {
        "id": s.id,
        "seek": round(s.start * 100),  # Whisper's unit (10 ms frames): where the piece's window starts
        "start": s.start,
        "end": s.end,
        "text": s.text,
        "tokens": list(s.tokens),
        "temperature": 0.0,  # greedy decoding
        "compression_ratio": round(s.compression_ratio, 4),
    }


async def models(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "view")
    if refused is not None:
        return ApiError(refused.status, (refused.text or "forbidden").strip(), None, "forbidden").response()
    model = {
        "id": ctx.captioner.engine.model_name,
        "object": "model",
        "created": 0,
        "owned_by": "glmasr-live",
    }
    return web.json_response({"object": "list", "data": [model]}, headers={"Cache-Control": "no-store"})
