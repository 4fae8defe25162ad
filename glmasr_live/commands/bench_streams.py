"""``glmasr-live bench-streams``: concurrent live streams on one model, batched vs one at a time."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

from glmasr_live.commands.options import add_bench_model_args, positive_float
from glmasr_live.option_table import add_option

SCHEDULINGS = ("batched", "single")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench-streams",
        help="benchmark concurrent live streams on one model (table; JSON with --json)",
        description="N streams (1, 2, 4, ... doubling until batched scheduling no longer holds "
        "p95 end of speech -> final <= 1 s without lag growth, or --max-streams) replay "
        "different recordings in real time through the scheduler, batched and one step at a "
        "time. --model full = full-size GLM-ASR with random weights (scripted text).",
    )
    add_bench_model_args(p)
    p.add_argument("--seconds", type=positive_float, default=20.0, help="length of each recording (default 20)")
    add_option(p, "interval")
    p.add_argument("--streams", default=None, help="comma-separated N to run (default: 1, 2, 4, ... doubling)")
    p.add_argument("--max-streams", type=int, default=64, help="largest N of the doubling (default 64)")
    p.add_argument(
        "--scheduling", default=",".join(SCHEDULINGS), help="comma-separated subset of batched,single"
    )
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    p.set_defaults(func=run)


def _counts(args: argparse.Namespace) -> list[int]:
    from glmasr_live.errors import ConfigError

    if args.streams is None:
        if args.max_streams < 1:
            raise ConfigError(f"--max-streams {args.max_streams}: must be at least 1")
        out, n = [], 1
        while n <= args.max_streams:
            out.append(n)
            n *= 2
        return out
    try:
        counts = [int(x) for x in args.streams.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--streams {args.streams!r}: expected numbers like 1,2,4,8") from None
    if not counts or min(counts) < 1:
        raise ConfigError(f"--streams {args.streams!r}: every N must be at least 1")
    return sorted(set(counts))


def run(args: argparse.Namespace) -> int:
    from glmasr_live import bench, streams_bench
    from glmasr_live.errors import ConfigError

    schedulings = [x.strip() for x in args.scheduling.split(",") if x.strip()]
    bad = [x for x in schedulings if x not in SCHEDULINGS]
    if bad or not schedulings:
        raise ConfigError(f"--scheduling {args.scheduling!r}: choose from {', '.join(SCHEDULINGS)}")
    counts = _counts(args)
    engine = bench.build_engine(args.model, args.device, args.dtype)
    full = args.model == "full"
    script = bench._script(engine, args.seconds, full)
    print(f"rendering {max(counts)} recordings of {args.seconds:g} s ...", file=sys.stderr, flush=True)
    recs = streams_bench.recordings(max(counts), args.seconds)

    def make_decoder() -> Any:
        return bench._decoder(engine, script)

    rows: list[Any] = []
    going = set(schedulings)
    for n in counts:
        for sch in schedulings:
            if sch not in going:
                continue
            print(f"{sch}: {n} stream(s) ...", file=sys.stderr, flush=True)
            row = streams_bench.run_streams(make_decoder, recs[:n], sch, args.interval, engine)
            rows.append(row)
            print(streams_bench.format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
            if args.streams is None and not row.held:
                going.discard(sch)  # it broke: larger N only for the other scheduling
        if not going:
            break
    meta = _meta(args, engine, full)
    held = {s: streams_bench.largest_held(rows, s) for s in schedulings}
    meta["largest_n_held"] = held
    print(
        f"model {meta['model']} on {meta['device']} ({meta['dtype']}), recordings of {args.seconds:g} s, "
        f"partials every {args.interval} s, {meta['machine']}"
    )
    print(streams_bench.format_table(rows))
    print("largest N held (p95 end of speech -> final <= 1.0 s, no lag growth): "
          + ", ".join(f"{s} {n}" for s, n in held.items()))
    if held.get("single") and "batched" in held:
        print(f"batching gain: {held['batched'] / held['single']:.1f}x the streams of one-at-a-time")
    if args.json:
        args.json.write_text(streams_bench.to_json(rows, meta))
    return 0


def _meta(args: argparse.Namespace, engine: Any, full: bool) -> dict[str, Any]:
    import os

    return {
        "model": args.model,
        "device": str(engine.device),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "seconds": args.seconds,
        "interval_s": args.interval,
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={len(os.sched_getaffinity(0))}".strip(),
        "scripted_text": full,
    }
