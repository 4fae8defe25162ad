"""A room's read side: ``WS /v1/rooms/{room}/captions`` and ``GET /v1/rooms/{room}/transcript.EXT``.

The feed sends a ``hello`` with the room's recent finals (a late joiner has context), then
every partial and final of every speaker in the room. Viewers only read; what they send is
ignored. A viewer that cannot read a room gets 403 whether or not the room exists, so names
of rooms are never revealed to someone who may not read them.
"""

from __future__ import annotations

import json

from aiohttp import WSMsgType, web

from glmasr_live.server.context import CTX
from glmasr_live.server.rooms import TRANSCRIPT_FORMATS, Outbox, RoomFull, valid_room

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
