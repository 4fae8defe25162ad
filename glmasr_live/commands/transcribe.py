"""``glmasr-live transcribe FILE...``: segmented (default), whole-file or streaming transcription.

- ``segmented``: each file is streamed in blocks through the segmenter into pieces (utterances,
  none longer than the model's window); the pieces of all files are batched, sorted by length,
  each with its own token cap (``glmasr_live.offline``). Any length, bounded memory.
- ``whole``: each file in one prompt, as upstream's script does; refused past the model's limit.
- ``streaming``: the live decoder replayed over the file, with partial and final events.
"""

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
MODES = ("segmented", "whole", "streaming")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "transcribe",
        help="transcribe audio files of any length (segmented, whole-file, or streaming replay)",
        description="Transcribe wav/flac/ogg/mp3 (and, with ffmpeg, m4a/webm/video) files at any "
        "rate and channel count.",
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--format", choices=FORMATS, default=None, help="output format (default: from -o, else txt)"
    )
    p.add_argument("-o", "--output", default=None, help="output file (one input) or directory (several)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default="segmented",
        help="segmented (default): utterances batched across files, any length; whole: each file in "
        "one prompt as upstream (refused past the model's limit); streaming: VAD + streaming "
        "decoder, partial and final events",
    )
    p.add_argument("--realtime", action="store_true", help="streaming: replay at real-time pace")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="segmented: pieces per batch; whole: files per batch (default: from free memory)",
    )
    p.add_argument(
        "--max-seconds", type=positive_float, default=None, help="only the first N seconds of each file"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar on the terminal")
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
    from glmasr_live.audio.filestream import open_file

    fmt = _format(args)
    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    files = [Path(f) for f in args.files]
    several = len(files) > 1
    if several and not args.output and fmt in ("srt", "vtt"):
        raise ConfigError(f"several files as {fmt}: give -o DIR for one subtitle file per input")
    if args.output and several and Path(args.output).exists() and not Path(args.output).is_dir():
        raise ConfigError(f"-o {args.output}: with several input files, -o must be a directory")
    # Check every file before loading the model: a bad file fails in a second.
    checked = [open_file(f) for f in files]

    from glmasr_live.asr.engine import AsrEngine

    engine = AsrEngine(engine_settings(args))
    writer = _Writer(args.output, fmt, several)
    if args.mode == "segmented":
        _segmented(engine, checked, args, writer)
    elif args.mode == "whole":
        _whole(engine, checked, args, writer)
    else:
        for f in checked:
            writer.streaming(f.path, lambda out, f=f: _streaming(engine, f.path, args, out))
    return 0


def _batch_size(engine: Any, args: argparse.Namespace, seconds: float | None = None) -> int:
    return int(args.batch_size or engine.batch_size_for_memory(seconds))


def _bar(checked: list[Any], args: argparse.Namespace) -> Any:
    from glmasr_live.commands.progress import ProgressBar

    durations = [f.duration for f in checked]
    total = None if None in durations else sum(d for d in durations if d is not None)
    if total is not None and args.max_seconds:
        total = sum(min(d or 0.0, args.max_seconds) for d in durations)
    return ProgressBar(len(checked), total, enabled=False if args.quiet else None)


def _segmented(engine: Any, checked: list[Any], args: argparse.Namespace, writer: _Writer) -> None:
    from glmasr_live.offline import Progress, transcribe_recordings

    def model(clips: list[Any], caps: list[int]) -> list[Any]:
        return list(engine.transcribe(clips, max_new_tokens=caps))

    bar = _bar(checked, args)

    def progress(p: Progress) -> None:
        bar.update(p.files_done, p.audio_done_s)

    recordings = (_limited(f.blocks(), args.max_seconds) for f in checked)
    results = transcribe_recordings(recordings, model, engine.max_new_tokens, engine.window_samples,
                                    _batch_size(engine, args), segmenter_settings(args), progress)  # fmt: skip
    try:
        for f, result in zip(checked, results, strict=True):
            bar.clear()
            writer.result(f.path, result)
    finally:
        bar.close()


def _limited(blocks: Any, max_seconds: float | None) -> Any:
    from glmasr_live.events import SAMPLE_RATE

    left = int(max_seconds * SAMPLE_RATE) if max_seconds else None
    for block in blocks:
        if left is not None:
            block = block[:left]
            left -= len(block)
        if len(block):
            yield block
        if left == 0:
            return


def _whole(engine: Any, checked: list[Any], args: argparse.Namespace, writer: _Writer) -> None:
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.events import SAMPLE_RATE
    from glmasr_live.pieces import FileTranscript, Segment, speech_spans

    limit = engine.whole_limit_seconds()
    for f in checked:  # before any decoding: the refusal comes at once
        seconds = min(f.duration or 0.0, args.max_seconds or float("inf"))
        if seconds > limit:
            raise ConfigError(_too_long(f.path, seconds, limit))
    batch = _batch_size(engine, args, limit)
    bar = _bar(checked, args)
    done_s = 0.0
    try:
        for k in range(0, len(checked), batch):
            chunk = checked[k : k + batch]
            audios = [_clip(load_audio(f.path), args.max_seconds) for f in chunk]
            for f, a in zip(chunk, audios, strict=True):
                if len(a) / SAMPLE_RATE > limit:  # the container did not tell its length
                    raise ConfigError(_too_long(f.path, len(a) / SAMPLE_RATE, limit))
            caps = [engine.max_new_tokens(len(a) / SAMPLE_RATE) for a in audios]
            for i, (f, a, tr) in enumerate(zip(chunk, audios, engine.transcribe(audios, caps), strict=True)):
                dur = round(len(a) / SAMPLE_RATE, 3)
                seg = Segment(0, 0.0, dur, " ".join(tr.text.split()), tr.token_ids, speech_spans(a, 0.0))
                done_s += dur
                bar.clear()
                writer.result(f.path, FileTranscript((seg,), seg.text, dur))
                bar.update(k + i + 1, done_s, force=True)
    finally:
        bar.close()


def _too_long(path: Path, seconds: float, limit: float) -> str:
    return (
        f"{path}: {seconds:.1f} s is over what --mode whole can take in one prompt with this model "
        f"({limit:.0f} s); use --mode segmented (the default), which has no limit"
    )


def _clip(audio: Any, max_seconds: float | None) -> Any:
    from glmasr_live.events import SAMPLE_RATE

    return audio[: int(max_seconds * SAMPLE_RATE)] if max_seconds else audio


def _streaming(engine: Any, path: Path, args: argparse.Namespace, live_out: TextIO | None) -> list[Any]:
    from glmasr_live.asr.streaming import StreamingDecoder
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.replay import ReplaySettings, replay

    audio = _clip(load_audio(path), args.max_seconds)
    decoder = StreamingDecoder(engine, streaming_settings(args), instruction=args.prompt)
    events = []
    rs = ReplaySettings(interval_s=args.interval, realtime=args.realtime)
    for ev in replay(audio, decoder, rs, segmenter_settings(args)):
        events.append(ev)
        if live_out is not None:  # jsonl streams as events happen
            print(ev.to_json(), file=live_out, flush=True)
    return events


class _Writer:
    """One output per input: stdout (with a header per file when several), a file, or a directory."""

    def __init__(self, output: str | None, fmt: str, several: bool) -> None:
        self.output, self.fmt, self.several = output, fmt, several

    def result(self, f: Path, result: Any) -> None:
        from glmasr_live import pieces
        from glmasr_live.captions.cues import make_cues

        out, close = self._open(f)
        try:
            if self.fmt in ("srt", "vtt"):
                _write_cues(out, make_cues(result.segments), self.fmt)
            else:
                _write(out, pieces.finals(result), self.fmt)
        finally:
            if close:
                out.close()

    def streaming(self, f: Path, run: Any) -> None:
        from glmasr_live.captions.cues import cues_from_finals

        out, close = self._open(f)
        try:
            events = run(out if self.fmt == "jsonl" else None)
            if self.fmt in ("srt", "vtt"):
                _write_cues(out, cues_from_finals(e for e in events if e.type == "final"), self.fmt)
            elif self.fmt == "txt":
                _write(out, events, self.fmt)
        finally:
            if close:
                out.close()

    def _open(self, f: Path) -> tuple[TextIO, bool]:
        if self.output is None:
            if self.several and self.fmt in ("txt", "jsonl"):
                _file_header(sys.stdout, f, self.fmt)
            return sys.stdout, False
        path = Path(self.output)
        if self.several:
            path.mkdir(parents=True, exist_ok=True)
            path = path / f"{f.stem}.{self.fmt}"
        try:
            return path.open("w", encoding="utf-8"), True
        except OSError as e:
            raise ConfigError(f"cannot write {path}: {e.strerror}") from e


def _file_header(out: TextIO, f: Path, fmt: str) -> None:
    if fmt == "txt":
        print(f"==> {f} <==", file=out)
    else:
        from glmasr_live.policy import CaptionBuilder

        print(CaptionBuilder().status("file", str(f), 0.0).to_json(), file=out)


def _write_cues(out: TextIO, cues: list[Any], fmt: str) -> None:
    from glmasr_live.captions.cues import render_srt, render_vtt

    out.write(render_srt(cues) if fmt == "srt" else render_vtt(cues))
    out.flush()


def _write(out: TextIO, events: list[Any], fmt: str) -> None:
    from glmasr_live.captions.transcripts import render_txt

    if fmt == "jsonl":
        for e in events:
            print(e.to_json(), file=out)
    else:
        out.write(render_txt([e for e in events if e.type == "final"]))
    out.flush()
