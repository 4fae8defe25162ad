"""``glmasr-live bench``: compute per second of audio for offline, streaming and naive policies."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from typing import Any

from glmasr_live.commands.options import add_bench_model_args, add_context_argument, positive_float
from glmasr_live.option_table import add_option

POLICIES = ("offline", "streaming-full", "streaming-none", "naive")


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmark streaming cost (table; JSON with --json)",
        description="Compute per second of audio for the offline pass, the streaming decoder "
        "(both encoder paddings) and the naive re-run-everything policy, plus optional "
        "memory over a long session. --model full = full-size GLM-ASR with random weights.",
    )
    add_bench_model_args(p)
    p.add_argument("--seconds", type=positive_float, default=60.0, help="monologue length (default 60)")
    add_option(p, "interval")
    p.add_argument(
        "--policies", default=",".join(POLICIES), help=f"comma-separated subset of {','.join(POLICIES)}"
    )
    p.add_argument("--naive-steps", type=int, default=24, help="naive steps actually run (sampled evenly)")
    p.add_argument("--memory-minutes", type=float, default=0.0, help="also replay N minutes and report RSS")
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    add_context_argument(p)
    p.add_argument(
        "--one-utterance",
        action="store_true",
        help="feed the monologue as one utterance instead of VAD segments",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glmasr_live.devtools import bench
    from glmasr_live.errors import ConfigError

    policies = [x.strip() for x in args.policies.split(",") if x.strip()]
    bad = [x for x in policies if x not in POLICIES]
    if bad:
        raise ConfigError(f"--policies: unknown policy {bad[0]!r}; choose from {', '.join(POLICIES)}")
    engine = bench.build_engine(args.model, args.device, args.dtype)
    full = args.model == "full"
    audio, _words = bench.monologue(args.seconds)
    utts = [audio] if args.one_utterance else bench.utterances_of(audio)
    script = bench._script(engine, max(len(u) for u in utts) / 16000, full)
    rows = []
    for policy in policies:
        print(f"running {policy} ...", file=sys.stderr, flush=True)
        if policy == "offline":
            rows.append(bench.run_offline(engine, utts, script))
        elif policy.startswith("streaming-"):
            padding = policy.split("-")[1]
            rows.append(bench.run_streaming(engine, utts, script, padding, args.interval, args.context))
        else:
            rows.append(bench.run_naive(engine, utts, script, args.interval, args.naive_steps))
    meta = {
        "model": args.model,
        "parameters": engine.parameters,
        "device": str(engine.device),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "window_s": engine.window_seconds,
        "seconds": args.seconds,
        "interval_s": args.interval,
        "context_s": args.context,
        "utterances": len(utts),
        "longest_utterance_s": max(len(u) for u in utts) / 16000,
        "machine": f"{platform.machine()} {platform.processor() or ''} cores={_cores()}".strip(),
        "scripted_tokens_per_s": bench.SCRIPT_RATE if full else None,
    }
    print(
        f"model {meta['model']} on {meta['device']} ({meta['dtype']}), {args.seconds:.0f} s monologue, "
        f"partials every {args.interval} s"
    )
    print(bench.format_table(rows))
    for m in rows:
        if "step_ms_at_0_3s" in m.extra:
            a, b = m.extra["step_ms_at_0_3s"], m.extra["step_ms_after_8s"]
            print(
                f"{m.policy}: partial step {a:.0f} ms in the first 3 s of an utterance, "
                + (f"{b:.0f} ms after 8 s" if b is not None else "no utterance longer than 8 s")
            )
            table = ", ".join(f"{k} {v:.0f}" for k, v in m.extra["step_ms_by_position"].items())
            print(f"{m.policy}: step ms by position in the utterance: {table}")
    offline = next((m for m in rows if m.policy == "offline"), None)
    if offline and offline.wall_s > 0:
        for m in rows:
            if m.policy != "offline":
                print(f"{m.policy}: {m.wall_s / offline.wall_s:.1f}x the offline compute time")
    if args.memory_minutes > 0:
        mem = bench.memory_session(engine, args.memory_minutes)
        meta["memory"] = mem
        print(
            "memory: "
            + ", ".join(f"{k} {v:.1f}" if isinstance(v, float) else f"{k} {v}" for k, v in mem.items())
        )
    if args.json:
        args.json.write_text(bench.to_json(rows, meta))
    return 0


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0))
