"""``glmasr-live vad FILE``: the speech segments the segmenter finds, to tune it and benchmark it."""

from __future__ import annotations

import argparse
import json
from typing import Any

from glmasr_live.commands.options import add_endpoint_argument
from glmasr_live.option_table import add_option


def add_sensitivity_argument(parser: argparse.ArgumentParser) -> None:
    """``--vad-sensitivity``: the one segmenter knob users get (the live command shares it)."""
    add_option(parser, "vad_sensitivity")
    add_option(parser, "vad_model")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "vad",
        help="print the speech segments found in an audio file",
        description="Print the speech segments the segmenter finds in FILE, one per line as "
        '\'START END\' in seconds; with --json a JSON list of {"start": s, "end": e}.',
    )
    p.add_argument(
        "file", metavar="FILE", help="audio file (wav, flac, mp3, ...; any rate, channels averaged)"
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    add_sensitivity_argument(p)
    add_endpoint_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.audio.segmenter import SegmenterSettings, find_segments
    from glmasr_live.events import SAMPLE_RATE

    audio = load_audio(args.file)
    segments = find_segments(
        audio, SegmenterSettings.from_sensitivity(args.vad_sensitivity, args.endpoint, args.vad_model)
    )
    spans = [(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3)) for a, b in segments]
    if args.json:
        print(json.dumps([{"start": a, "end": b} for a, b in spans]))
    else:
        for a, b in spans:
            print(f"{a:.3f} {b:.3f}")
    return 0
