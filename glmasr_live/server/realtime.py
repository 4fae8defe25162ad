"""``WS /v1/realtime``: vLLM's realtime transcription protocol (being written)."""

from __future__ import annotations

from aiohttp import web


async def handle(request: web.Request) -> web.StreamResponse:
    return web.Response(status=501, text="not yet\n")
