"""``POST /v1/audio/transcriptions`` (being written)."""

from __future__ import annotations

from aiohttp import web


async def handle(request: web.Request) -> web.StreamResponse:
    return web.Response(status=501, text="not yet\n")


async def models(request: web.Request) -> web.StreamResponse:
    return web.Response(status=501, text="not yet\n")
