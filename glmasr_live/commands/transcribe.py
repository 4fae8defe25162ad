"""``glmasr-live transcribe FILE...``: offline (the reference) or streaming replay of files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from glmasr_live.commands.options import (
    add_model_args,
    add_streaming_args,
    engine_settings,
    positive_float,
    segmenter_settings,
    streaming_settings,
)
from glmasr_live.errors import ConfigError

FORMATS = ("txt", "jsonl", "srt", "vtt")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files (offline reference, or streaming replay with caption events)",
        description="Transcribe wav/flac/ogg/mp3 files at any rate and channel count.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="output format (default: from -o, else txt)"
    )
    p.add_argument("-o", "--output", default=None, help="output file (one input) or directory (several)")
    p.add_argument(
        "--mode",
        choices=["offline", "streaming"],
        default="offline",
        help="offline: whole file in one pass; streaming: VAD + streaming decoder, partial and final events",
    )
    p.add_argument("--realtime", action="store_true", help="streaming: replay at real-time pace")
    p.add_argument("--batch-size", type=int, default=8, help="offline: files per batch")
    p.add_argument(
        "--max-seconds", type=positive_float, default=None, help="only the first N seconds of each file"
    )
    add_model_args(p)
    add_streaming_args(p)
    p.set_defaults(func=run)


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return str(args.format)
    if args.output and Path(args.output).suffix.lstrip(".") in FORMATS:
        return Path(args.output).suffix.lstrip(".")
    return "txt"


def run(args: argparse.Namespace) -> int:
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.events import SAMPLE_RATE

    fmt = _format(args)
    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    files = [Path(f) for f in args.files]
    several = len(files) > 1
    if several and not args.output and fmt in ("srt", "vtt"):
        raise ConfigError(f"several files as {fmt}: give -o DIR for one subtitle file per input")
    if args.output and several and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ConfigError(f"-o {args.output}: with several input files, -o must be a directory")
    # Read (and validate) every file before loading the model: a bad file fails in a second.
    audios = []
    for f in files:
        a = load_audio(f)
        if args.max_seconds:
            a = a[: int(args.max_seconds * SAMPLE_RATE)]
        audios.append(a)

    from glmasr_live.asr.engine import AsrEngine

    engine = AsrEngine(engine_settings(args))
    results = _offline(engine, audios, args.batch_size) if args.mode == "offline" else None
    for i, (f, audio) in enumerate(zip(files, audios, strict=True)):
        out, close = _open_output(args.output, f, fmt, several)
        try:
            if several and out is sys.stdout and fmt in ("txt", "jsonl"):
                _file_header(out, f, fmt)
            if results is not None:
                events = [results[i]]
            else:
                events = _streaming(engine, audio, args, out if fmt == "jsonl" else None)
            _write(out, events, fmt, streamed=results is None and fmt == "jsonl")
        finally:
            if close:
                out.close()
    return 0


def _offline(engine: Any, audios: list[Any], batch: int) -> list[Any]:
    from glmasr_live.asr.streaming import Hypothesis
    from glmasr_live.captioning import CaptionBuilder
    from glmasr_live.events import SAMPLE_RATE

    events = []
    for k in range(0, len(audios), batch):
        chunk = audios[k : k + batch]
        for a, tr in zip(chunk, engine.transcribe(chunk), strict=True):
            dur = len(a) / SAMPLE_RATE
            hyp = Hypothesis(tr.text, "", len(a), True, 0.0, tr.token_ids)
            events.append(CaptionBuilder().caption(0, 0, hyp, dur))
    return events


def _streaming(engine: Any, audio: Any, args: argparse.Namespace, live_out: TextIO | None) -> list[Any]:
    from glmasr_live.asr.streaming import StreamingDecoder
    from glmasr_live.replay import ReplaySettings, replay

    decoder = StreamingDecoder(engine, streaming_settings(args), instruction=args.prompt)
    events = []
    rs = ReplaySettings(interval_s=args.interval, realtime=args.realtime)
    for ev in replay(audio, decoder, rs, segmenter_settings(args)):
        events.append(ev)
        if live_out is not None:  # jsonl streams as events happen
            print(ev.to_json(), file=live_out, flush=True)
    return events


def _open_output(output: str | None, f: Path, fmt: str, several: bool) -> tuple[TextIO, bool]:
    if output is None:
        return sys.stdout, False
    path = Path(output)
    if several:
        path.mkdir(parents=True, exist_ok=True)
        path = path / f"{f.stem}.{fmt}"
    try:
        return path.open("w", encoding="utf-8"), True
    except OSError as e:
        raise ConfigError(f"cannot write {path}: {e.strerror}") from e


def _file_header(out: TextIO, f: Path, fmt: str) -> None:
    if fmt == "txt":
        print(f"==> {f} <==", file=out)
    else:
        from glmasr_live.captioning import CaptionBuilder

        print(CaptionBuilder().status("file", str(f), 0.0).to_json(), file=out)


def _write(out: TextIO, events: list[Any], fmt: str, streamed: bool) -> None:
    from glmasr_live.captions.transcripts import render_srt, render_txt, render_vtt

    finals = [e for e in events if e.type == "final"]
    if fmt == "jsonl":
        if not streamed:
            for e in events:
                print(e.to_json(), file=out)
    elif fmt == "txt":
        out.write(render_txt(finals))
    elif fmt == "srt":
        out.write(render_srt(finals))
    else:
        out.write(render_vtt(finals))
    out.flush()
