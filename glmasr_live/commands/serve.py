"""``glmasr-live serve``: one model, many streams over the network (see docs/server.md).

Every option can also come from a TOML file (``--config FILE``, else
``$XDG_CONFIG_HOME/glmasr-live/serve.toml`` when it exists), keyed by the long flag names with
dashes or underscores: ``bus = "redis://redis.internal:6379/0"``, ``max-streams = 8``. Flags
win over the file. The file is serve's own: the live command's ``config.toml`` holds options
(``input``, ``no-tui``) that a server does not have.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from glmasr_live.commands.options import add_model_args, add_streaming_args, positive_float
from glmasr_live.errors import ConfigError
from glmasr_live.server.settings import ServerSettings

_D = ServerSettings()
CONFIG_FILE = "serve.toml"
SECRET = frozenset({"bus", "publish_token", "view_token"})  # never echoed in an error line


def register(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="caption server: audio in over websockets, rooms, browser microphone, OpenAI/vLLM APIs",
        description="One process, one loaded model, many live streams. Binds 127.0.0.1:8765 by "
        "default; any other address requires tokens (generated and printed when not given). "
        f"Options may also come from a TOML file (--config, default ~/.config/glmasr-live/{CONFIG_FILE}).",
    )
    _add_arguments(p)
    _defer_defaults(p)
    p.set_defaults(func=run)


def _add_arguments(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help=f"TOML file of these options, keys as the long flag names (default: "
                   f"~/.config/glmasr-live/{CONFIG_FILE} when it exists); flags win over it")  # fmt: skip


def _defer_defaults(p: argparse.ArgumentParser) -> None:
    """Every option defaults to None on the command line, so that an absent flag can fall back
    to the config file (``resolve``); the help still names the real default."""
    for action in p._actions:  # argparse offers no public walk over a parser's options
        if action.option_strings and action.dest not in ("help", "config"):
            if action.help and "%(default)s" in action.help:
                action.help = action.help.replace("%(default)s", str(action.default))
            action.default = None


def _reference() -> dict[str, argparse.Action]:
    """serve's options with their real defaults, types and choices: a parser built the same way."""
    p = argparse.ArgumentParser(add_help=False)
    _add_arguments(p)
    return {a.dest: a for a in p._actions if a.dest != "config"}


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Flag > config file > default, for every serve option."""
    from glmasr_live.config import default_config_path, load_config_file

    path = args.config or default_config_path(CONFIG_FILE)
    conf = load_config_file(path, required=args.config is not None)
    options = _reference()
    unknown = sorted(set(conf) - set(options))
    if unknown:
        raise ConfigError(f"config file {path}: unknown key(s): {', '.join(unknown)}")
    values = vars(args).copy()
    for dest, action in options.items():
        if values.get(dest) is None:  # not given as a flag
            values[dest] = _from_file(path, dest, conf[dest], action) if dest in conf else action.default
    return argparse.Namespace(**values)


def _from_file(path: Path, dest: str, value: Any, action: argparse.Action) -> Any:
    """A config file's value, checked as the flag's own text would be (ConfigError if bad)."""
    from glmasr_live.option_table import OPTIONS

    try:
        if dest in OPTIONS:
            return OPTIONS[dest].check(value)  # the table's one check, as for the flag
        if isinstance(action.default, list):  # a repeatable flag: a list, or one value
            return [_scalar(action, v) for v in (value if isinstance(value, list) else [value])]
        return _scalar(action, value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
        shown = "..." if dest in SECRET else repr(value)
        raise ConfigError(f"config file {path}: {dest.replace('_', '-')} = {shown}: {exc}") from None


def _scalar(action: argparse.Action, value: Any) -> Any:
    if isinstance(value, (bool, list, dict)) or (action.type is None and not isinstance(value, str)):
        raise TypeError("expected " + ("a string" if action.type is None else "a single value"))
    try:
        converted = value if action.type is None else action.type(str(value))  # type: ignore[operator]
    except ValueError:  # int, float, Path: their own messages name no option
        raise ValueError(f"expected {getattr(action.type, '__name__', 'another value')}") from None
    if action.choices is not None and converted not in action.choices:
        raise ValueError(f"choose from {', '.join(map(str, action.choices))}")
    return converted


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
        max_streams_per_room=args.max_streams_per_room, idle_s=args.idle, bus=bus_url(args.bus),
    )  # fmt: skip


def bus_url(url: str | None) -> str | None:
    """``--bus`` checked (serve, bench-streams): a Redis URL, the redis package importable."""
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

    args = resolve(args)
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
