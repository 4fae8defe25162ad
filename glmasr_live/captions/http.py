"""HTTP and websocket helpers of the caption server: Host and loopback checks, header access,
the plain responses and the overlay page it serves, the shared text frame, the hello message."""

from __future__ import annotations

import hmac
import ipaddress
import socket
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Response

from glmasr_live import __version__
from glmasr_live.errors import ServerError
from glmasr_live.events import SCHEMA_VERSION

_OVERLAY_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
    "connect-src 'self' ws: wss:; img-src data:; base-uri 'none'; form-action 'none'"
)


def is_loopback(host: str) -> bool:
    """True for addresses that only this machine can reach."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(host_header: str) -> str | None:
    """``name`` from ``name:port`` or ``[v6]:port``, lower case; None if malformed."""
    try:
        name = urlsplit("//" + host_header.strip()).hostname
    except ValueError:
        return None
    return name.rstrip(".") if name else None


class HostCheck:
    """Which Host headers and browser Origins a server on ``host`` accepts (DNS rebinding and
    cross-site pages are the threats: any page a user opens may try to reach a local port).

    Loopback names and IP literals are always accepted as Host; other names only when listed
    (plus the bind address and, bound to all interfaces, this machine's name). An Origin is
    accepted when it is listed, equals the Host (the server's own pages), or names an accepted
    host on the server's port. ``port`` is set once the server listens.
    """

    def __init__(self, host: str, allowed_hosts: tuple[str, ...] = (), allowed_origins: tuple[str, ...] = ()):
        self.port = 0
        self.allowed_origins = allowed_origins
        self._hosts = {h.lower().rstrip(".") for h in allowed_hosts}
        if not is_loopback(host):
            self._hosts.add(host.lower())
            if host in ("0.0.0.0", "::", ""):
                name = socket.gethostname().lower()
                self._hosts.update({name, name + ".local"})

    def host_allowed(self, host_header: str | None) -> bool:
        name = host_name(host_header) if host_header is not None else None
        if name is None:
            return False
        if name == "localhost" or name.endswith(".localhost") or name in self._hosts:
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True  # an IP literal cannot be rebound to this machine by someone else's DNS

    def origin_allowed(self, origin: str, host_header: str) -> bool:
        """A page of the server itself (loopback, the bind address, a listed name, on this
        server's port), or a listed origin. Never any IP literal: a page served from another
        machine's address on the same port must not read a loopback session."""
        if origin in self.allowed_origins:
            return True
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https"):
            return False
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
            name = (parts.hostname or "").rstrip(".")
        except ValueError:
            return False
        if not self.host_allowed(host_header):
            return False
        if parts.netloc.lower() == host_header.lower():
            return True  # same origin as the (vetted) Host: the server's own page
        if port != self.port:
            return False
        return is_loopback(name) or name == "localhost" or name.endswith(".localhost") or name in self._hosts


def token_matches(supplied: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the expected one."""
    if supplied is None:
        return False
    return hmac.compare_digest(supplied.encode(), expected.encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, else None."""
    if authorization is not None and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def text_frame(data: bytes) -> bytes:
    """One unmasked text frame, built once per event and written to every client.

    What ``protocol.send_text`` would produce for a server connection without extensions
    (compression is off), minus ~30% of the per-client fan-out cost; like ``broadcast()``, it
    relies on the protocol having nothing of its own in flight (the asyncio connection writes
    everything the protocol produces at once).
    """
    return Frame(Opcode.TEXT, data).serialize(mask=False, extensions=[])


def single(headers: Headers, name: str) -> str | None:
    values = headers.get_all(name)
    return values[0] if len(values) == 1 else None


def read_overlay() -> bytes:
    try:
        return resources.files("glmasr_live").joinpath("web/overlay.html").read_bytes()
    except OSError as exc:
        raise ServerError(f"the overlay page is missing from the installation: {exc}") from exc


def response(
    status: int, body: bytes, content_type: str, overlay: bool = False, head: bool = False
) -> Response:
    """A complete response; ``head``: the same headers without the body (a HEAD request)."""
    headers: list[tuple[str, str]] = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
        ("X-Content-Type-Options", "nosniff"),
        ("Connection", "close"),
    ]
    if overlay:
        # The page URL may carry the token: never leak it in a Referer.
        headers += [("Content-Security-Policy", _OVERLAY_CSP), ("Referrer-Policy", "no-referrer")]
    if status == 405:
        headers.append(("Allow", "GET, HEAD"))
    phrases: dict[int, str] = {200: "OK", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}
    return Response(status, phrases.get(status, ""), Headers(headers), b"" if head else body)


def text(status: int, text: str) -> Response:
    return response(status, text.encode(), "text/plain; charset=utf-8")


def hello_message(finals: list[dict[str, Any]]) -> dict[str, Any]:
    """The hello a subscriber receives first (documented in the JSON Schema)."""
    return {
        "type": "hello",
        "v": SCHEMA_VERSION,
        "server": "glmasr-live",
        "version": __version__,
        "finals": finals,
    }
