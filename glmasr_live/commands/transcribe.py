"""``glmasr-live transcribe FILE...``: segmented (default), whole-file or streaming transcription.

- ``segmented``: each file is streamed in blocks through the segmenter into pieces (utterances,
  none longer than the model's window); the pieces of all files are batched, sorted by length,
  each with its own token cap (``glmasr_live.offline``). Any length, bounded memory.
- ``whole``: each file in one prompt, as upstream's script does; refused past the model's limit.
- ``streaming``: the live decoder replayed over the file, with partial and final events.
"""

from __future__ import annotations

import argparse
import math
import os
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
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="FILE|DIR/",
        help="one input: a file (the format from its suffix), or a directory (an existing one, or a "
        "path ending in /) to get DIR/NAME.FORMAT; several inputs: a directory, one file per "
        "input named after it (two inputs of the same name are refused). Checked before any work",
    )
    p.add_argument(
        "--mode",
        choices=MODES,
        default="segmented",
        help="segmented (default): utterances batched across files, any length; whole: each file in "
        "one prompt as upstream (refused past the model's limit); streaming: VAD + streaming "
        "decoder, partial and final events",
    )
    p.add_argument("--realtime", action="store_true", help="--mode streaming only: replay at real-time pace")
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
    # A directory's name never sets the format (out.srt/ holds files of the default format).
    if args.output and not _names_directory(args.output) and Path(args.output).suffix.lstrip(".") in FORMATS:
        return Path(args.output).suffix.lstrip(".")
    return "txt"


def run(args: argparse.Namespace) -> int:
    from glmasr_live.audio.filestream import open_file

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.realtime and args.mode != "streaming":
        raise ConfigError(f"--realtime applies to --mode streaming only, not --mode {args.mode}")
    fmt = _format(args)
    files = [Path(f) for f in args.files]
    # Outputs and inputs are checked before the model loads: a bad one fails in a second,
    # not after the work is done.
    targets = _targets(args.output, files, fmt)
    checked = [open_file(f) for f in files]

    from glmasr_live.asr.engine import AsrEngine

    engine = AsrEngine(engine_settings(args))
    writer = _Writer(files, targets, fmt)
    if args.mode == "segmented":
        _segmented(engine, checked, args, writer)
    elif args.mode == "whole":
        _whole(engine, checked, args, writer)
    else:
        for i, f in enumerate(checked):
            writer.streaming(i, lambda out, f=f: _streaming(engine, f.path, args, out))
    return 0


def _names_directory(output: str) -> bool:
    return output.endswith(("/", os.sep)) or Path(output).is_dir()


def _targets(output: str | None, files: list[Path], fmt: str) -> list[Path] | None:
    """The file each input's transcript goes to (None: stdout), or a ``ConfigError``."""
    if output is None:
        if len(files) > 1 and fmt in ("srt", "vtt"):
            raise ConfigError(f"several files as {fmt}: give -o DIR/ for one subtitle file per input")
        return None
    if not output.strip():
        raise ConfigError("-o needs a file or directory name")
    out = Path(output)
    if not _names_directory(output):
        if len(files) > 1:
            raise ConfigError(f"-o {output}: several input files need a directory: an existing one, "
                              "or a path ending in /")  # fmt: skip
        _check_writable_dir(out.parent, output, may_create=False)
        return _checked_files(output, files, [out])
    if out.exists() and not out.is_dir():
        raise ConfigError(f"-o {output}: exists and is not a directory")
    _check_writable_dir(out, output, may_create=True)
    return _checked_files(output, files, [out / f"{f.stem}.{fmt}" for f in files])


def _check_writable_dir(d: Path, output: str, may_create: bool) -> None:
    """``d`` is a directory we may write in (or, ``may_create``, one we may make)."""
    probe = d
    while may_create and not probe.exists() and probe != probe.parent:
        probe = probe.parent  # the nearest existing folder is where mkdir will write
    if not probe.exists():
        raise ConfigError(f"-o {output}: no such directory: {probe}")
    if not probe.is_dir():
        raise ConfigError(f"-o {output}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"-o {output}: cannot write in {probe} (permission denied)")


def _checked_files(output: str, files: list[Path], targets: list[Path]) -> list[Path]:
    """Refuse outputs that would lose something: a transcript, an input, a directory."""
    seen: dict[Path, Path] = {}
    for f, t in zip(files, targets, strict=True):
        key = Path(os.path.abspath(t))
        if key in seen:
            raise ConfigError(f"-o {output}: {seen[key]} and {f} would both be written to {t}; "
                              "rename one or transcribe them in separate runs")  # fmt: skip
        seen[key] = f
        if t.is_dir():
            raise ConfigError(f"-o {output}: {t} is a directory")
        if t.exists() and any(_same_file(t, g) for g in files):
            raise ConfigError(f"-o {output}: {t} is an input file; it would be overwritten")
        if t.exists() and not os.access(t, os.W_OK):
            raise ConfigError(f"-o {output}: cannot write {t} (permission denied)")
    return targets


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # b is missing: open_file will say so
        return False


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
        for i, result in enumerate(results):
            bar.clear()
            writer.result(i, result)
    finally:
        bar.close()


def _limited(blocks: Any, max_seconds: float | None) -> Any:
    left = _samples(max_seconds)
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
            for i, (a, tr) in enumerate(zip(audios, engine.transcribe(audios, caps), strict=True)):
                dur = round(len(a) / SAMPLE_RATE, 3)
                seg = Segment(0, 0.0, dur, " ".join(tr.text.split()), tr.token_ids, speech_spans(a, 0.0))
                done_s += dur
                bar.clear()
                writer.result(k + i, FileTranscript((seg,), seg.text, dur))
                bar.update(k + i + 1, done_s, force=True)
    finally:
        bar.close()


def _too_long(path: Path, seconds: float, limit: float) -> str:
    # The limit rounded down, with as many decimals as it takes to tell the two apart: a
    # rounded-up limit ("106.8 s is over ... (107 s)") would contradict the refusal.
    for digits in range(1, 7):
        scale = 10**digits
        most = math.floor(limit * scale + 1e-6) / scale  # + 1e-6: 106.7 must not floor to 106.6
        if round(seconds, digits) > most:
            break
    return (
        f"{path}: {seconds:.{digits}f} s is over what --mode whole can take in one prompt with this "
        f"model ({most:.{digits}f} s); use --mode segmented (the default), which has no limit"
    )


def _samples(max_seconds: float | None) -> int | None:
    from glmasr_live.events import SAMPLE_RATE

    # Capped: 1e308 s is finite but overflows as samples; any cap past a file's length is none.
    return int(min(max_seconds * SAMPLE_RATE, sys.maxsize)) if max_seconds else None


def _clip(audio: Any, max_seconds: float | None) -> Any:
    return audio[: _samples(max_seconds)]


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
    """One output per input: stdout (with a header per file when several) or the checked targets."""

    def __init__(self, files: list[Path], targets: list[Path] | None, fmt: str) -> None:
        self.files, self.targets, self.fmt = files, targets, fmt

    def result(self, i: int, result: Any) -> None:
        from glmasr_live import pieces
        from glmasr_live.captions.cues import make_cues

        out, close = self._open(i)
        try:
            if self.fmt in ("srt", "vtt"):
                _write_cues(out, make_cues(result.segments), self.fmt)
            else:
                _write(out, pieces.finals(result), self.fmt)
        finally:
            if close:
                out.close()

    def streaming(self, i: int, run: Any) -> None:
        from glmasr_live.captions.cues import cues_from_finals

        out, close = self._open(i)
        try:
            events = run(out if self.fmt == "jsonl" else None)
            if self.fmt in ("srt", "vtt"):
                _write_cues(out, cues_from_finals(e for e in events if e.type == "final"), self.fmt)
            elif self.fmt == "txt":
                _write(out, events, self.fmt)
        finally:
            if close:
                out.close()

    def _open(self, i: int) -> tuple[TextIO, bool]:
        if self.targets is None:
            if len(self.files) > 1 and self.fmt in ("txt", "jsonl"):
                _file_header(sys.stdout, self.files[i], self.fmt)
            return sys.stdout, False
        path = self.targets[i]
        try:
            path.parent.mkdir(parents=True, exist_ok=True)  # -o DIR/ that did not exist yet
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
