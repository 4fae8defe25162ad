"""The server's pages: ``/mic`` (a browser microphone), ``/rooms/{room}`` (meeting viewers),
``/overlay`` (OBS). Static files from the package (``glmasr_live/web``), served with a strict
Content-Security-Policy and no Referer (their URLs may carry a token). A page needs no token to
load: it holds no data; its socket presents the token from the page's URL.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

from glmasr_live.server.context import CTX

_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src data:; media-src 'self'; base-uri 'none'; form-action 'none'"
)

_TYPES = {".html": "text/html", ".js": "text/javascript"}


def _read(name: str) -> bytes:
    return resources.files("glmasr_live").joinpath(f"web/{name}").read_bytes()


def _page(name: str):  # type: ignore[no-untyped-def]
    suffix = name[name.rindex(".") :]

    async def handler(request: web.Request) -> web.StreamResponse:
        ctx = request.app[CTX]
        why = ctx.access.browser_ok(request.headers)
        if why is not None:
            return ctx.text(403, f"forbidden: {why}")
        return web.Response(
            body=_read(name),
            headers={
                "Content-Type": f"{_TYPES[suffix]}; charset=utf-8",
                "Content-Security-Policy": _CSP,
                "Referrer-Policy": "no-referrer",
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    return handler


ROUTES = [
    ("GET", "/overlay", _page("overlay.html")),
    ("GET", "/mic", _page("mic.html")),
    ("GET", "/mic-worklet.js", _page("mic-worklet.js")),
    ("GET", "/rooms/{room}", _page("room.html")),
]
