"""A room's read side: ``WS /v1/rooms/{room}/captions`` and ``GET /v1/rooms/{room}/transcript.EXT``.

The feed sends a ``hello`` with the room's recent finals (a late joiner has context), then
every partial and final of every speaker in the room. Viewers only read; what they send is
ignored. A viewer that cannot read a room gets 403 whether or not the room exists, so names
of rooms are never revealed to someone who may not read them. With a bus, a transcript is
served once this replica's journal of the room has caught up from Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging

from aiohttp import WSMsgType, web

from glmasr_live.captions import transcripts
from glmasr_live.server.context import CTX, ServerContext
from glmasr_live.server.rooms import TRANSCRIPT_FORMATS, Outbox, RoomFull, RoomUnavailable, valid_room

log = logging.getLogger(__name__)

CONTENT_TYPES = {
    ".jsonl": "application/x-ndjson",
    ".srt": "application/x-subrip",
    ".vtt": "text/vtt",
    ".txt": "text/plain",
}


def _room_name(request: web.Request) -> str | None:
    name = request.match_info.get("room", "")
    return name if valid_room(name) else None


async def captions(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "view")
    if refused is not None:
        return refused
    name = _room_name(request)
    if name is None:
        return ctx.text(404, "no such room")
    ws = web.WebSocketResponse(max_msg_size=4096, heartbeat=20.0)
    await ws.prepare(request)
    try:
        room = await ctx.join(name)
    except RoomFull as exc:
        await ws.close(code=1013, message=str(exc).encode())
        return ws
    except RoomUnavailable as exc:  # logged once by the room; the viewer gets the reason
        await ws.close(code=1011, message=str(exc).encode()[:123])
        return ws

    def drop(why: str) -> None:
        request.app[CTX].spawn(ws.close(code=1008, message=f"too slow: {why}".encode()[:123]))

    outbox = Outbox(ws.send_str, ctx.settings.viewer_queue, drop)
    outbox.offer(json.dumps(ctx.hello(room), ensure_ascii=False, separators=(",", ":")))
    room.viewers.add(outbox)
    ctx.viewers.add(ws)
    try:
        async for msg in ws:  # viewers only read; anything they send is dropped
            if msg.type == WSMsgType.ERROR:
                break
    finally:
        room.viewers.discard(outbox)
        ctx.viewers.discard(ws)
        ctx.rooms.release(room)
    return ws


async def transcript(request: web.Request) -> web.StreamResponse:
    ctx = request.app[CTX]
    refused = ctx.refuse(request, "view")
    if refused is not None:
        return refused
    name = _room_name(request)
    fmt = "." + request.match_info.get("fmt", "")
    if name is None or fmt not in TRANSCRIPT_FORMATS:
        return ctx.text(404, "no such transcript")
    if ctx.bus is not None:
        await _caught_up(ctx, name)
    refused = await _unreadable(ctx, name)
    if refused is not None:
        return refused
    path = ctx.rooms.transcript_path(name, fmt)
    try:
        body = path.read_bytes()
    except FileNotFoundError:
        body = b"WEBVTT\n" if fmt == ".vtt" else b""  # a room with no finals yet: an empty file
    except OSError as exc:
        return ctx.text(500, f"cannot read the transcript: {exc.strerror}")
    return web.Response(
        body=body,
        headers={
            "Content-Type": f"{CONTENT_TYPES[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="{name}{fmt}"',
            "Cache-Control": "no-store",
        },
    )


async def _unreadable(ctx: ServerContext, name: str) -> web.Response | None:
    """A 500 naming the fault when the room's journal is corrupt: its SRT/VTT/TXT (if any) were
    made from an older journal, and an empty answer would read as "nothing said yet". An open
    room's journal was read whole when it opened, so only a closed room's is checked."""
    if ctx.rooms.get(name) is not None:
        return None
    journal = ctx.rooms.transcript_path(name, ".jsonl")
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(None, transcripts.check_journal, journal)
    except transcripts.CorruptJournal as exc:
        log.warning("room %s: transcript refused: %s", name, exc)
        return ctx.text(500, f"the transcript of room {name} is corrupt (journal line {exc.line}): "
                             f"the server's operator must move {name}.jsonl aside")  # fmt: skip
    except OSError as exc:
        log.warning("room %s: transcript refused: %s", name, exc)
        return ctx.text(500, f"the transcript of room {name} cannot be read")
    return None


async def _caught_up(ctx: ServerContext, name: str) -> None:
    """With a bus, this replica's copy of a room's transcript may be behind (it was down, or has
    not had the room open since): opening the room catches its journal up from Redis; wait
    (bounded) for those writes. Redis away or the server full: what is on disk is served."""
    try:
        room = await ctx.join(name)
    except (RoomFull, RoomUnavailable):
        return
    room.joining += 1  # held open while its journal catches up
    try:
        await asyncio.wait_for(asyncio.wrap_future(room.journal.flushed()), ctx.settings.close_timeout_s)
    except TimeoutError:
        pass
    finally:
        room.joining -= 1
        ctx.rooms.release(room)
