"""Who may do what on the server: publish and view tokens, Host and Origin checks.

Two roles: *publish* (send audio into a room; also read it) and *view* (only read rooms' feeds,
pages and transcripts). On a loopback address without tokens everyone may do both; on any
other address both tokens are required (generated when not given), compared in constant time.
A token comes as ``?token=`` or ``Authorization: Bearer``. Browsers are held to the Host and
Origin rules of ``captions.http.HostCheck`` (the broadcaster's), so no other site's page can
drive a local server.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Literal

from glmasr_live.captions import http

Role = Literal["publish", "view"]


class Access:
    def __init__(self, host: str, publish_token: str | None, view_token: str | None,
                 allowed_hosts: tuple[str, ...] = (), allowed_origins: tuple[str, ...] = ()) -> None:  # fmt: skip
        exposed = not http.is_loopback(host)
        self.generated: list[str] = []
        if exposed and not publish_token:
            publish_token = secrets.token_urlsafe(24)
            self.generated.append("publish")
        if exposed and not view_token:
            view_token = secrets.token_urlsafe(24)
            self.generated.append("view")
        if publish_token and view_token and publish_token == view_token:
            from glmasr_live.errors import ConfigError

            raise ConfigError("the publish and view tokens must differ")
        self.publish_token = publish_token or None
        self.view_token = view_token or None
        self.check = http.HostCheck(host, allowed_hosts, allowed_origins)

    def role(self, query: Mapping[str, str], headers: Mapping[str, str]) -> Role | None:
        """The strongest role the request's token grants; None: no access at all."""
        supplied = query.get("token") or http.bearer(headers.get("Authorization"))
        if self.publish_token is None or http.token_matches(supplied, self.publish_token):
            return "publish"
        if self.view_token is None or http.token_matches(supplied, self.view_token):
            return "view"
        return None

    def may(self, wanted: Role, query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
        role = self.role(query, headers)
        return role == "publish" or (role == "view" and wanted == "view")

    def browser_ok(self, headers: Mapping[str, str]) -> str | None:
        """None when Host (and Origin, if any) are acceptable; else the reason to refuse."""
        host = headers.get("Host")
        if host is None or not self.check.host_allowed(host):
            return "Host not allowed"
        origin = headers.get("Origin")
        if origin is not None and not self.check.origin_allowed(origin, host):
            return "Origin not allowed"
        return None
