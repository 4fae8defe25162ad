"""``glmasr-live bench-offline``: long recordings, segmented vs whole vs streaming, throughput by
batch size, cue timing against the true word times (table; JSON with --json)."""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path
from typing import Any

from glmasr_live.commands.options import add_bench_model_args
from glmasr_live.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-offline",
        help="benchmark offline transcription of long recordings (segmented, whole, streaming)",
        description="Builds long multi-utterance recordings in the demo model's domain (espeak-ng, "
        "held-out voices, every word's time known), transcribes them segmented, whole and "
        "streaming, and reports WER/CER, throughput of the segmented path at each batch size, and "
        "the error of the subtitle cue times.",
    )
    add_bench_model_args(p)
    p.add_argument("--seconds", default="100,150,180,750",
                   help="comma-separated lengths of the recordings (default 100,150,180,750)")  # fmt: skip
    p.add_argument("--batches", default="1,8,32", help="batch sizes for throughput (default 1,8,32)")
    p.add_argument("--throughput-seconds", type=float, default=None,
                   help="length of the throughput recording (default: the longest of --seconds)")  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write the results as JSON")
    p.set_defaults(func=run)


def _numbers(text: str, name: str, kind: type) -> list[Any]:
    try:
        out = [kind(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{name}: give comma-separated numbers, not {text!r}") from None
    if not out or min(out) <= 0:
        raise ConfigError(f"{name}: give positive numbers")
    return out


def run(args: argparse.Namespace) -> int:
    from glmasr_live.devtools import offline_bench as ob
    from glmasr_live.devtools.longform import long_recording
    from glmasr_live.devtools.synth import require_espeak

    lengths = _numbers(args.seconds, "--seconds", float)
    batches = _numbers(args.batches, "--batches", int)
    require_espeak()
    engine = _engine(args)
    named = [(f"long{int(s)}s", long_recording(s, seed=100 + i)) for i, s in enumerate(lengths)]
    rows = ob.accuracy(engine, named)
    tp_len = args.throughput_seconds or max(lengths)
    tp_rec = next((r for (_, r), s in zip(named, lengths, strict=True) if s == tp_len), None)
    tp = ob.throughput(engine, tp_rec or long_recording(tp_len, seed=99), batches)
    report = {"engine": engine.describe(), "machine": _machine(),
              "whole_limit_s": round(engine.whole_limit_seconds(), 1), "recordings": rows, "throughput": tp}  # fmt: skip
    print(_table(report))
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--json {args.json}: cannot write ({e.strerror})") from e
    return 0


def _engine(args: argparse.Namespace) -> Any:
    from glmasr_live.asr.engine import AsrEngine, EngineSettings

    settings = EngineSettings(model=args.model, device=args.device, dtype=args.dtype)
    if args.model == "full":
        from glmasr_live.asr.full import full_size_engine

        return full_size_engine(settings)
    return AsrEngine(settings)


def _machine() -> str:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{platform.machine()} {cpu} cores={len(os.sched_getaffinity(0))}".strip()


def _rate(mode: Any) -> str:
    if isinstance(mode, str):
        return "refused"
    return f"{100 * mode['wer']:.1f} / {100 * mode['cer']:.1f}"


def _table(r: dict[str, Any]) -> str:
    out = [f"bench-offline: {r['engine']}; {r['machine']}; whole-mode limit {r['whole_limit_s']} s",
           "", "recording     seconds  utts  WER / CER %: segmented    whole          streaming"]  # fmt: skip
    for row in r["recordings"]:
        out.append(f"{row['name']:<12} {row['seconds']:>8} {row['utterances']:>5}  "
                   f"{_rate(row['segmented']):>22} {_rate(row['whole']):>14} {_rate(row['streaming']):>18}")  # fmt: skip
    out += ["", "cue timing (word start/end error, s; exactly recognised pieces): median / p90"]
    for row in r["recordings"]:
        t = row["cue_timing"]
        sp, ev = t["speech"], t["even"]
        out.append(f"{row['name']:<12} speech stretches {sp['median_s']} / {sp['p90_s']}   "
                   f"spread evenly {ev['median_s']} / {ev['p90_s']}   ({t['pieces_exact']}/{t['of_pieces']} pieces)")  # fmt: skip
    out += ["", "throughput, segmented: batch  audio s  wall s  × real time  vs batch 1"]
    for t in r["throughput"]:
        out.append(
            f"{'':>23}{t['batch']:>5} {t['audio_s']:>8} {t['wall_s']:>7} {t['x_realtime']:>12} {t['vs_batch_1']:>11}"
        )
    return "\n".join(out)
