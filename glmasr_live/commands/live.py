"""``glmasr-live`` without a subcommand: live captions (microphone, file or stdin).

Flags win over GLMASR_LIVE_* environment variables, which win over the TOML config file.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from glmasr_live.asr.defaults import DEFAULT_MODEL
from glmasr_live.config import (
    PipelineSettings,
    coerce,
    environment_values,
    load_config_file,
)
from glmasr_live.errors import ConfigError
from glmasr_live.option_table import OPTIONS, add_option, parse

# name -> default; every live flag defaults to None on the command line so that an absent flag
# can fall back to the environment and the config file.
DEFAULTS: dict[str, Any] = {
    "input": "",
    "realtime": False,
    "input_device": "",
    "stdin_format": "s16le",
    "stdin_rate": 16000,
    "stdin_channels": 1,
    "model": DEFAULT_MODEL,
    "device": "auto",
    "dtype": "auto",
    "prompt": "",
    "transcript": [],
    "ws": "127.0.0.1:8765",
    "no_ws": False,
    "ws_token": "",
    "no_tui": False,
    **{name: opt.default for name, opt in OPTIONS.items()},  # the streaming options' one table
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("live captions (no subcommand)")
    g.add_argument("--input", help="audio file, or - for raw PCM on stdin (default: the microphone)")
    g.add_argument(
        "--realtime", action="store_true", default=None, help="replay --input FILE at real-time pace"
    )
    g.add_argument(
        "--input-device", help="microphone by name (substring) or index; see `glmasr-live devices`"
    )
    g.add_argument(
        "--stdin-format",
        choices=["s16le", "s32le", "f32le", "u8"],
        help="raw PCM sample format for --input -",
    )
    g.add_argument("--stdin-rate", type=int, help="raw PCM sample rate for --input - (default 16000)")
    g.add_argument("--stdin-channels", type=int, help="raw PCM channels for --input - (default 1)")
    g.add_argument("--model", help=f"hub id, local directory or 'demo' (default: {DEFAULT_MODEL})")
    g.add_argument("--device", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    g.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16", "float64"])
    g.add_argument("--prompt", help="instruction text for the model (default: the model's own)")
    g.add_argument(
        "--transcript", action="append", help="write finals to PATH (.jsonl .srt .vtt .txt); repeatable"
    )
    g.add_argument(
        "--ws", metavar="HOST:PORT", help="caption websocket server address (default 127.0.0.1:8765)"
    )
    g.add_argument("--no-ws", action="store_true", default=None, help="no websocket server")
    g.add_argument("--ws-token", help="token websocket clients must present (required off loopback)")
    g.add_argument("--no-tui", action="store_true", default=None, help="plain caption lines on stdout")
    for name in OPTIONS:
        add_option(g, name, default=False)
    g.add_argument(
        "--config", type=Path, help="TOML config file (default: ~/.config/glmasr-live/config.toml)"
    )


def resolve(args: argparse.Namespace, environ: dict[str, str] | None = None) -> dict[str, Any]:
    """Flag > GLMASR_LIVE_* > config file > default, for every live option."""
    env = environment_values(dict(os.environ) if environ is None else environ)
    config_path = getattr(args, "config", None) or (Path(env["config"]) if "config" in env else None)
    conf = load_config_file(config_path, required=config_path is not None)
    unknown = set(conf) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"unknown key(s) in config file: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, default in DEFAULTS.items():
        value = getattr(args, name, None)
        if value is None and name in env:
            value = _checked(name, f"GLMASR_LIVE_{name.upper()}", env[name], default)
        if value is None and name in conf:
            value = _checked(name, f"{name} (config file)", conf[name], default)
        out[name] = default if value is None else value
    return out


def _checked(name: str, source: str, value: Any, default: Any) -> Any:
    """A value from the environment or the config file, its error naming ``source``: the
    streaming options through their table (settings_from checks every value again, a flag's
    too), the rest converted to the type of their default."""
    if name in OPTIONS:
        return parse(name, value, source)
    return coerce(source, value, default)


def settings_from(values: dict[str, Any]) -> PipelineSettings:
    values = {**values, **{name: parse(name, values[name]) for name in OPTIONS}}  # one check each
    if values["realtime"] and not values["input"]:
        raise ConfigError("--realtime needs --input FILE")
    s = PipelineSettings(
        input=values["input"] or None,
        input_device=values["input_device"] or None,
        realtime=bool(values["realtime"]),
        stdin_format=values["stdin_format"],
        stdin_rate=int(values["stdin_rate"]),
        stdin_channels=int(values["stdin_channels"]),
        model=values["model"],
        device=values["device"],
        dtype=values["dtype"],
        prompt=values["prompt"] or None,
        encoder_padding=values["encoder_padding"],
        agreement=int(values["agreement"]),
        interval_s=float(values["interval"]),
        vad_sensitivity=float(values["vad_sensitivity"]),
        vad_model=str(values["vad_model"]),
        caption_gate=str(values["caption_gate"]),
        endpoint_s=float(values["endpoint"]),
        context_s=float(values["context"]),
        ws=None if values["no_ws"] else values["ws"],
        ws_token=values["ws_token"] or None,
        transcripts=tuple(values["transcript"]),
    )
    s.ws_host_port()  # validate now
    return s


def run(args: argparse.Namespace) -> int:
    values = resolve(args)
    return run_session(settings_from(values), plain=bool(values["no_tui"]))


def run_session(settings: PipelineSettings, plain: bool, title: str = "glmasr-live") -> int:
    from glmasr_live.pipeline import LivePipeline

    def make_session() -> LivePipeline:
        return LivePipeline(settings)

    # Both front ends turn Ctrl-C and SIGTERM into a graceful stop: the current utterance's
    # final is emitted and written before exit.
    from glmasr_live.plain import run_plain, use_tui

    if not use_tui(no_tui=plain):
        return run_plain(make_session)
    from glmasr_live.tui.app import run_app

    return run_app(make_session, title=title, model=settings.model)
