"""``glmasr-live eval DIR``: WER/CER of offline and streaming transcription side by side, and
how fast streaming captions arrive (latency on the simulated live clock)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any

from glmasr_live.commands.options import (
    add_model_args,
    add_streaming_args,
    engine_settings,
    segmenter_settings,
    streaming_settings,
)
from glmasr_live.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from glmasr_live.devtools.eval import EvalItem, EvalReport, FileReport

PADDINGS = ("full", "none")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        # resolve: --encoder-padding is redefined below with a "both" choice
        conflict_handler="resolve",
        help="accuracy (WER/CER) and caption latency, offline vs streaming, on a labelled set",
        description="Transcribe a labelled set offline and streaming, and report WER (Latin "
        "script) or CER (Chinese, Cantonese) per file and overall, side by side, with the caption "
        "latency measured from the streaming events. DIR is a directory of audio files with "
        "same-named .txt references, a directory with manifest.jsonl, or a JSONL manifest "
        '({"audio": PATH, "text": REF, "lang": optional, "words": optional timings}).',
    )
    p.add_argument("dir", metavar="DIR", help="labelled set: audio + .txt files, or a JSONL manifest")
    p.add_argument(
        "--mode",
        choices=["offline", "streaming", "both", "segmented", "whole", "all"],
        default="both",
        help="offline (= whole, the upstream reference) and/or streaming (both, the default); "
        "segmented or whole alone; all: segmented, whole and streaming",
    )
    p.add_argument(
        "--json", metavar="OUT", default=None, help="also write the full report as JSON ('-': stdout)"
    )
    p.add_argument("--batch-size", type=int, default=8, help="offline: files per batch")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N files")
    p.add_argument("--summary", action="store_true", help="print the overall figures only, no per-file rows")
    add_model_args(p)
    add_streaming_args(p)
    p.add_argument(
        "--encoder-padding",
        choices=["full", "none", "both"],
        default="both",
        help="streaming encoder padding: full (as upstream), none (true length), or both side by side",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glmasr_live.devtools.eval import load_dataset

    if args.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    items = load_dataset(args.dir)[: args.limit]
    modes = _modes(args.mode, args.encoder_padding)
    json_out = _json_target(args.json)

    from glmasr_live.asr.engine import AsrEngine

    engine = AsrEngine(engine_settings(args))
    report = evaluate(engine, items, modes, args)
    report.meta = {"model": args.model, "engine": engine.describe(), "dataset": str(args.dir)}
    text = format_report(report, per_file=not args.summary)
    print(text, file=sys.stderr if json_out == "-" else sys.stdout)
    if json_out is not None:
        data = json.dumps(report.to_dict(), ensure_ascii=False, indent=1)
        if json_out == "-":
            print(data)
        else:
            try:
                Path(json_out).write_text(data + "\n", encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"--json {json_out}: cannot write ({e.strerror})") from e
    return 0


def _modes(mode: str, padding: str) -> list[str]:
    out = {"offline": ["offline"], "both": ["offline"], "segmented": ["segmented"], "whole": ["whole"],
           "all": ["segmented", "whole"]}.get(mode, [])  # fmt: skip
    if mode in ("streaming", "both", "all"):
        out += [f"streaming-{p}" for p in (PADDINGS if padding == "both" else (padding,))]
    return out


def _json_target(path: str | None) -> str | None:
    """Fail before the model loads when the report could not be written."""
    if path is None or path == "-":
        return path
    parent = Path(path).expanduser().resolve().parent
    if not parent.is_dir():
        raise ConfigError(f"--json {path}: directory {parent} does not exist")
    return str(Path(path).expanduser())


# ---------------------------------------------------------------------------- running the model


def evaluate(
    engine: Any, items: Sequence[EvalItem], modes: list[str], args: argparse.Namespace
) -> EvalReport:
    from glmasr_live.devtools.eval import EvalReport, FileReport

    files = [FileReport(it, 0.0) for it in items]
    compute: dict[str, float] = {}
    progress = Progress(len(items) * len(modes))
    try:
        for mode in modes:
            progress.describe(mode)
            if mode in ("offline", "whole"):
                compute[mode] = _run_offline(engine, files, mode, args.batch_size, progress)
            elif mode == "segmented":
                compute[mode] = _run_segmented(engine, files, args, progress)
            else:
                compute[mode] = _run_streaming(engine, files, mode, args, progress)
    finally:
        progress.close()
    return EvalReport(modes, files, compute)


def _load(f: FileReport) -> np.ndarray:
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.events import SAMPLE_RATE

    audio = load_audio(f.item.audio)
    f.seconds = len(audio) / SAMPLE_RATE
    return audio


def _run_offline(engine: Any, files: list[FileReport], mode: str, batch: int, progress: Progress) -> float:
    """Each file in one prompt; a file past the model's limit is scored as empty (and said)."""
    from glmasr_live.devtools.eval import RunResult, score
    from glmasr_live.events import SAMPLE_RATE

    limit = engine.whole_limit_seconds()
    spent = 0.0
    for k in range(0, len(files), batch):
        chunk = files[k : k + batch]
        audios = [_load(f) for f in chunk]
        fit = [i for i, a in enumerate(audios) if len(a) / SAMPLE_RATE <= limit]
        t0 = time.perf_counter()
        caps = [engine.max_new_tokens(len(audios[i]) / SAMPLE_RATE) for i in fit]
        done = dict(zip(fit, engine.transcribe([audios[i] for i in fit], caps), strict=True))
        spent += time.perf_counter() - t0
        for i, f in enumerate(chunk):
            text = done[i].text if i in done else ""
            if i not in done:
                print(f"eval: {mode}: {f.item.name} ({f.seconds:.0f} s) is over the model's one-prompt "
                      f"limit of {limit:.0f} s: scored as empty", file=sys.stderr)  # fmt: skip
            f.runs[mode] = RunResult(text, score([f.item.reference], [text]))
        progress.advance(len(chunk))
    return spent


def _run_segmented(
    engine: Any, files: list[FileReport], args: argparse.Namespace, progress: Progress
) -> float:
    """All files through the segmented path (``glmasr_live.offline``), pieces batched across files."""
    from glmasr_live.audio.filestream import open_file
    from glmasr_live.devtools.eval import RunResult, score
    from glmasr_live.offline import transcribe_recordings

    spent = 0.0

    def model(clips: list[Any], caps: list[int]) -> list[Any]:
        nonlocal spent
        t0 = time.perf_counter()
        out = engine.transcribe(clips, max_new_tokens=caps)
        spent += time.perf_counter() - t0
        return list(out)

    recordings = (open_file(f.item.audio).blocks() for f in files)
    results = transcribe_recordings(recordings, model, engine.max_new_tokens, engine.window_samples,
                                    args.batch_size, segmenter_settings(args))  # fmt: skip
    for f, result in zip(files, results, strict=True):
        f.seconds = result.duration
        f.runs["segmented"] = RunResult(result.text, score([f.item.reference], [result.text]))
        progress.advance(1)
    return spent


def _run_streaming(
    engine: Any, files: list[FileReport], mode: str, args: argparse.Namespace, progress: Progress
) -> float:
    from glmasr_live.asr.streaming import StreamingDecoder
    from glmasr_live.devtools.eval import RunResult, caption_latency, score
    from glmasr_live.events import join_text
    from glmasr_live.replay import ReplaySettings, replay

    ns = argparse.Namespace(**{**vars(args), "encoder_padding": mode.removeprefix("streaming-")})
    decoder = StreamingDecoder(engine, streaming_settings(ns), instruction=args.prompt)
    segmenter = segmenter_settings(args)
    spent = 0.0
    for f in files:
        audio = _load(f)
        t0 = time.perf_counter()
        events = list(replay(audio, decoder, ReplaySettings(interval_s=args.interval), segmenter))
        spent += time.perf_counter() - t0
        text = reduce(join_text, [e.text for e in events if e.type == "final"], "")
        latency = caption_latency(events, f.item.words, segmenter.post_roll_s)
        f.runs[mode] = RunResult(text, score([f.item.reference], [text]), latency)
        progress.advance(1)
    return spent


class Progress:
    """tqdm on stderr when installed; else one rewritten stderr line. Only on a terminal."""

    def __init__(self, total: int):
        self.total, self.done, self.desc = total, 0, ""
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        if self.tty:
            try:
                from tqdm import tqdm
            except ImportError:
                return
            self._bar = tqdm(total=total, unit="file", file=sys.stderr, leave=False, dynamic_ncols=True)

    def describe(self, desc: str) -> None:
        self.desc = desc
        if self._bar is not None:
            self._bar.set_description(desc)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.tty:
            print(f"\r{self.desc}: {self.done}/{self.total} files", end="", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.tty:
            print("\r\033[K", end="", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the table


def format_report(report: EvalReport, per_file: bool = True) -> str:
    modes = report.modes
    head = (
        f"eval: {len(report.files)} files, {report.audio_s:.1f} s of audio; "
        f"{report.meta.get('engine', '')}; error rates in %"
    )
    blocks = [head]
    if per_file:
        rows = [_file_row(f, modes) for f in report.files]
        blocks.append(_table(("file", "lang", "metric", "units", *modes), rows, left=3))
    rows = []
    for name, metric, files in report.groups():
        scores = {m: report.overall(files, m) for m in modes}
        first = next((m for m in modes if not m.startswith("streaming")), None)
        base = scores.get(first) if first else None
        cells = [
            _rate(s.rate, base.rate if base is not None and m != first else None) for m, s in scores.items()
        ]
        rows.append(
            (name, str(len(files)), metric.upper(), str(next(iter(scores.values())).ref_units), *cells)
        )
    blocks.append(_table(("overall", "files", "metric", "units", *modes), rows, left=1))
    streaming = [m for m in modes if m.startswith("streaming")]
    if streaming:
        blocks.append(_latency_table(report, streaming))
    blocks.append(
        "real-time factor (compute / audio): " + ", ".join(f"{m} {report.rtf(m):.3f}" for m in modes)
    )
    return "\n\n".join(blocks)


def _file_row(f: FileReport, modes: list[str]) -> tuple[str, ...]:
    ref_units = next(iter(f.runs.values())).score.ref_units if f.runs else 0
    cells = [_rate(f.runs[m].score.rate) if m in f.runs else "-" for m in modes]
    return (f.item.name, f.item.lang, f.item.metric.upper(), str(ref_units), *cells)


def _rate(rate: float, base: float | None = None) -> str:
    text = f"{100 * rate:.1f}"
    return text if base is None else f"{text} ({100 * (rate - base):+.1f})"


def _latency_table(report: EvalReport, modes: list[str]) -> str:
    def pair(p: dict[str, float | None]) -> str:
        return "-" if p["p50"] is None else f"{p['p50']:.2f} / {p['p95']:.2f}"

    rows = []
    for m in modes:
        la = report.latency(m)
        timed = la["timed_words"]
        rows.append(
            (
                m,
                pair(la["word_shown"]),
                pair(la["word_committed"]),
                pair(la["speech_end_to_final"]),
                f"{la['shown_words']}/{timed}" if timed else "-",
                f"{la['committed_words']}/{timed}" if timed else "-",
            )
        )
    header = ("latency s p50 / p95", "word shown", "word committed", "speech end→final", "shown", "committed")
    return _table(header, rows, left=1)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int) -> str:
    """Columns padded to their widest cell; the first ``left`` columns flush left, the rest right."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
