"""``glmasr-live demo``: the bundled recording through the live pipeline with the demo model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

DEMO_AUDIO = Path(__file__).resolve().parents[2] / "assets" / "demo.wav"


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="play the bundled recording through the live pipeline with the bundled demo model",
        description="Needs no microphone, no GPU and no download. Captions appear in the terminal UI "
        "(plain lines when stdout is not a terminal) and on the websocket/overlay.",
    )
    p.add_argument("--fast", action="store_true", help="as fast as the model goes instead of real time")
    p.add_argument("--no-tui", action="store_true", help="plain caption lines on stdout")
    p.add_argument("--no-ws", action="store_true", help="no websocket server")
    p.add_argument("--ws", default="127.0.0.1:8765", metavar="HOST:PORT", help="websocket address")
    p.add_argument("--transcript", action="append", default=[], help="also write finals to PATH")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glmasr_live.commands.live import run_session
    from glmasr_live.config import PipelineSettings
    from glmasr_live.errors import GlmAsrLiveError

    if not DEMO_AUDIO.exists():
        raise GlmAsrLiveError(f"the bundled demo recording is missing: {DEMO_AUDIO}")
    settings = PipelineSettings(
        input=str(DEMO_AUDIO),
        realtime=not args.fast,
        model="demo",
        ws=None if args.no_ws else args.ws,
        transcripts=tuple(args.transcript),
    )
    return run_session(settings, plain=args.no_tui, title="glmasr-live demo")
