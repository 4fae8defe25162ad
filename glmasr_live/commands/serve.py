"""``glmasr-live serve``: one model, many streams over the network (see docs/server.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from glmasr_live.commands.options import add_model_args, add_streaming_args, positive_float
from glmasr_live.errors import ConfigError
from glmasr_live.server.settings import ServerSettings

_D = ServerSettings()


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="caption server: audio in over websockets, rooms, browser microphone, OpenAI/vLLM APIs",
        description="One process, one loaded model, many live streams. Binds 127.0.0.1:8765 by "
        "default; any other address requires tokens (generated and printed when not given).",
    )
    add_model_args(p)
    add_streaming_args(p)
    g = p.add_argument_group("server")
    g.add_argument("--ws", metavar="HOST:PORT", default=f"{_D.host}:{_D.port}",
                   help="address to listen on (default %(default)s)")  # fmt: skip
    g.add_argument("--publish-token", default=None, help="token that may send audio into rooms")
    g.add_argument("--view-token", default=None, help="token that may only read rooms' feeds and pages")
    g.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="extra browser Origin allowed (repeatable)")  # fmt: skip
    g.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="extra Host name accepted, e.g. studio.local (repeatable)")  # fmt: skip
    g.add_argument("--transcripts", type=Path, default=_D.transcripts_dir, metavar="DIR",
                   help="rooms' transcripts: DIR/ROOM.jsonl .srt .vtt .txt (default %(default)s)")  # fmt: skip
    g.add_argument(
        "--max-streams", type=int, default=_D.max_streams, help="live streams at once (default %(default)s)"
    )
    g.add_argument("--max-streams-per-room", type=int, default=_D.max_streams_per_room,
                   help="live streams in one room at once (default %(default)s)")  # fmt: skip
    g.add_argument("--idle", type=positive_float, default=_D.idle_s,
                   help="end a live socket silent this many seconds (default %(default)s)")  # fmt: skip
    g.add_argument("--bus", default=None, metavar="redis://HOST:PORT/DB",
                   help="share rooms with other replicas through Redis (password in the URL or "
                   "REDIS_PASSWORD); without it this process serves its rooms alone")  # fmt: skip
    g.add_argument("--certfile", type=Path, default=None, help="TLS certificate (serve https/wss)")
    g.add_argument("--keyfile", type=Path, default=None, help="TLS private key for --certfile")
    p.set_defaults(func=run)


def server_settings(args: argparse.Namespace) -> ServerSettings:
    from glmasr_live.config import PipelineSettings

    host, port = PipelineSettings(ws=args.ws).ws_host_port() or (_D.host, _D.port)
    for flag in ("max_streams", "max_streams_per_room"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    return ServerSettings(
        host=host, port=port, publish_token=args.publish_token, view_token=args.view_token,
        allowed_hosts=tuple(args.allow_host), allowed_origins=tuple(args.allow_origin),
        transcripts_dir=args.transcripts, max_streams=args.max_streams,
        max_streams_per_room=args.max_streams_per_room, idle_s=args.idle, bus=_bus_url(args.bus),
    )  # fmt: skip


def _bus_url(url: str | None) -> str | None:
    if url is None:
        return None
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError("--bus: give a redis://HOST:PORT/DB (or rediss://, unix://) URL")
    try:
        import redis  # noqa: F401
    except ImportError as exc:
        raise ConfigError("--bus needs the redis package: pip install 'glmasr-live[bus]'") from exc
    return url


def _ssl(args: argparse.Namespace) -> Any:
    if args.certfile is None and args.keyfile is None:
        return None
    if args.certfile is None:
        raise ConfigError("--keyfile needs --certfile")
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(args.certfile, args.keyfile)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {args.certfile}: {exc}") from exc
    return context


def run(args: argparse.Namespace) -> int:
    import asyncio

    from glmasr_live.commands.options import engine_settings, segmenter_settings, streaming_settings
    from glmasr_live.policy import PolicySettings
    from glmasr_live.server.app import ServerContext, announce, serve
    from glmasr_live.server.rooms import Rooms  # noqa: F401 - fail fast on a broken install
    from glmasr_live.streams import Captioner

    settings = server_settings(args)
    ssl_context = _ssl(args)
    try:
        settings.transcripts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--transcripts {settings.transcripts_dir}: {exc.strerror}") from exc
    from glmasr_live.asr.engine import AsrEngine

    engine = AsrEngine(engine_settings(args))
    captioner = Captioner(
        engine=engine, streaming=streaming_settings(args), segmenter=segmenter_settings(args),
        policy=PolicySettings(interval_s=args.interval),
    )  # fmt: skip

    async def main() -> None:
        ctx = ServerContext(settings, captioner)
        await serve(ctx, ready=announce, ssl_context=ssl_context)

    try:
        asyncio.run(main())
    finally:
        captioner.close()
    return 0
