"""Every setting of the server, with its default, in one record."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServerSettings:
    """How ``glmasr-live serve`` listens, whom it lets in and what it allows.

    Fields:
        host, port: where to listen (127.0.0.1:8765; port 0 picks a free one).
        publish_token: may send audio into a room (and read it); generated off loopback.
        view_token: may only read rooms' feeds, pages and transcripts; generated off loopback.
        allowed_hosts, allowed_origins: extra Host names and browser Origins accepted.
        transcripts_dir: each room's journal and SRT/VTT/TXT go here (``ROOM.jsonl`` ...).
        max_frame_bytes: largest websocket message a client may send.
        max_streams: live streams (ingest + realtime) the server holds at once.
        max_streams_per_room: live streams one room holds at once.
        max_rooms: rooms held at once (a room with no streams and no viewers is let go).
        idle_s: a live socket that sends nothing this long is ended (its final is kept).
        max_speed: sustained audio faster than this × real time closes a live socket.
        burst_s: audio a live socket may send ahead of real time before ``max_speed`` counts
            (a browser page sends what it buffered during a network drop at once).
        backlog_finals: finals a late joiner of a room's feed receives first.
        viewer_queue: messages that may wait for one slow viewer; one more and it is dropped.
        max_upload_bytes: largest file ``POST /v1/audio/transcriptions`` accepts.
        close_timeout_s: how long shutdown waits for open utterances' finals.
        bus: ``redis://[:PASSWORD@]HOST:PORT/DB``: replicas share rooms through Redis
            (``server/bus.py``); None: this process serves its rooms alone.
    """

    host: str = "127.0.0.1"
    port: int = 8765
    publish_token: str | None = None
    view_token: str | None = None
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    transcripts_dir: Path = Path("rooms")
    max_frame_bytes: int = 1 << 20
    max_streams: int = 64
    max_streams_per_room: int = 16
    max_rooms: int = 256
    idle_s: float = 30.0
    max_speed: float = 2.0
    burst_s: float = 30.0
    backlog_finals: int = 20
    viewer_queue: int = 256
    max_upload_bytes: int = 200 << 20
    close_timeout_s: float = 30.0
    bus: str | None = None
