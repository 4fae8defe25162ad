"""``glmasr-live bench-streams``: concurrent live streams on one model, batched vs one at a time."""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Iterator
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
        "time. --model full = full-size GLM-ASR with random weights (scripted text). --network: "
        "each N again through a real server on 127.0.0.1 (websocket speakers and viewers), with "
        "network / in-process ratios measured in the same run.",
    )
    add_bench_model_args(p)
    p.add_argument(
        "--seconds", type=positive_float, default=20.0, help="length of each recording (default 20)"
    )
    add_option(p, "interval")
    p.add_argument(
        "--streams", default=None, help="comma-separated N to run (default: 1, 2, 4, ... doubling)"
    )
    p.add_argument("--max-streams", type=int, default=64, help="largest N of the doubling (default 64)")
    p.add_argument(
        "--scheduling", default=None,
        help="comma-separated subset of batched,single (default both; with --network, batched)",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="write results as JSON")
    g = p.add_argument_group("network (--network)")
    g.add_argument("--network", action="store_true",
                   help="also push the same streams through a real `serve` on 127.0.0.1 from websocket "
                   "clients, with viewers; network rows and network / in-process ratios")  # fmt: skip
    g.add_argument("--viewers", type=int, default=2, help="viewer sockets per room (default 2)")
    g.add_argument("--streams-per-room", type=int, default=1,
                   help="speaker streams per room; N streams fill ceil(N / this) rooms (default 1)")  # fmt: skip
    g.add_argument("--frame-ms", type=positive_float, default=30.0,
                   help="audio per websocket frame, sent in real time (default 30, the in-process feed)")  # fmt: skip
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


def _schedulings(args: argparse.Namespace) -> list[str]:
    from glmasr_live.errors import ConfigError

    default = "batched" if args.network else ",".join(SCHEDULINGS)
    text = args.scheduling if args.scheduling is not None else default
    schedulings = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in schedulings if x not in SCHEDULINGS]
    if bad or not schedulings:
        raise ConfigError(f"--scheduling {text!r}: choose from {', '.join(SCHEDULINGS)}")
    if args.network and "batched" not in schedulings:
        schedulings.insert(0, "batched")  # the network rows are compared with batched in-process
    for flag in ("viewers", "streams_per_room"):
        if getattr(args, flag) < (0 if flag == "viewers" else 1):
            raise ConfigError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: too small")
    return schedulings


def run(args: argparse.Namespace) -> int:
    from glmasr_live.devtools import bench, streams_bench

    schedulings = _schedulings(args)
    counts = _counts(args)
    engine = bench.build_engine(args.model, args.device, args.dtype)
    full = args.model == "full"
    script = bench._script(engine, args.seconds, full)
    print(f"rendering {max(counts)} recordings of {args.seconds:g} s ...", file=sys.stderr, flush=True)
    recs = streams_bench.recordings(max(counts), args.seconds)

    def make_decoder() -> Any:
        return bench._decoder(engine, script)

    with _network(args, engine, make_decoder, max(counts)) as net:
        rows, pairs = _run_counts(args, counts, schedulings, recs, make_decoder, engine, net)
    meta = _meta(args, engine, full)
    held = {s: streams_bench.largest_held(rows, s) for s in [*schedulings, *(["network"] if pairs else [])]}
    meta["largest_n_held"] = held
    print(
        f"model {meta['model']} on {meta['device']} ({meta['dtype']}), recordings of {args.seconds:g} s, "
        f"partials every {args.interval} s, {meta['machine']}"
    )
    print(streams_bench.format_table(rows))
    print(
        "largest N held (p95 end of speech -> final <= 1.0 s, no lag growth): "
        + ", ".join(f"{s} {n}" for s, n in held.items())
    )
    if held.get("single") and "batched" in held:
        print(f"batching gain: {held['batched'] / held['single']:.1f}x the streams of one-at-a-time")
    if pairs:
        _print_network(args, meta, pairs)
    if args.json:
        args.json.write_text(streams_bench.to_json(rows, meta))
    return 0


def _run_counts(args: argparse.Namespace, counts: list[int], schedulings: list[str], recs: list[Any],
                make_decoder: Any, engine: Any, net: Any) -> tuple[list[Any], list[Any]]:  # fmt: skip
    """Every N: each scheduling in-process, then (with ``net``) the network run, in that order."""
    from glmasr_live.devtools import serve_bench, streams_bench

    rows: list[Any] = []
    pairs: list[Any] = []
    going = set(schedulings) | ({"network"} if net else set())
    for n in counts:
        audio_s = sum(len(r.audio) for r in recs[:n]) / streams_bench.SAMPLE_RATE
        local: dict[str, Any] = {}
        for sch in [*schedulings, "network"]:
            if sch not in going:
                continue
            print(f"{sch}: {n} stream(s) ...", file=sys.stderr, flush=True)
            if sch == "network":
                row = serve_bench.run_network(net, recs[:n], args.interval, _plan(args), engine, f"n{n}")
                row.extra["vs_in_process"] = serve_bench.compare(local["batched"], row)
                pairs.append((local["batched"], row))
            else:
                cpu0 = time.process_time()  # for the network / in-process CPU ratio
                row = streams_bench.run_streams(make_decoder, recs[:n], sch, args.interval, engine)
                row.extra["process_cpu_per_audio_s"] = round((time.process_time() - cpu0) / audio_s, 4)
                local[sch] = row
            rows.append(row)
            print(streams_bench.format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
            if args.streams is None and not row.held:
                going.discard(sch)  # it broke: larger N only for the others
        if not going or (net and "batched" not in going):
            break
    return rows, pairs


@contextlib.contextmanager
def _network(args: argparse.Namespace, engine: Any, make_decoder: Any, most: int) -> Iterator[Any]:
    """The real server for ``--network`` (None without it): one Captioner on the bench's engine."""
    if not args.network:
        yield None
        return
    from glmasr_live.devtools import serve_bench
    from glmasr_live.policy import PolicySettings

    cap = serve_bench.BenchCaptioner(engine=engine, policy=PolicySettings(interval_s=args.interval))
    cap.scheduler.make_decoder = make_decoder  # the in-process runs' decoders (--model full's script)
    try:
        with (
            serve_bench.transcripts_dir() as tmp,
            serve_bench.BenchServer(cap, Path(tmp), most, args.streams_per_room) as srv,
        ):
            yield srv
    finally:
        cap.close()


def _plan(args: argparse.Namespace) -> Any:
    from glmasr_live.devtools.serve_bench import NetworkPlan

    return NetworkPlan(viewers=args.viewers, per_room=args.streams_per_room, frame_s=args.frame_ms / 1000)


def _print_network(args: argparse.Namespace, meta: dict[str, Any], pairs: list[Any]) -> None:
    from glmasr_live.devtools import serve_bench

    meta["network"] = {
        "viewers_per_room": args.viewers, "streams_per_room": args.streams_per_room,
        "frame_ms": args.frame_ms, "clients": "one thread, own event loop, same process (shares cores and GIL)",
        "ratios": [{"streams": b.streams, **b.extra["vs_in_process"]} for _, b in pairs],
    }  # fmt: skip
    print(f"\nnetwork: websocket clients ({args.frame_ms:g} ms s16le frames in real time) -> serve on "
          f"127.0.0.1, {args.viewers} viewer(s) per room, {args.streams_per_room} stream(s) per room; "
          "x = network / in-process (batched), same run")  # fmt: skip
    print(serve_bench.format_network_table(pairs))


def _meta(args: argparse.Namespace, engine: Any, full: bool) -> dict[str, Any]:
    import os

    return {
        "model": args.model,
        "device": str(engine.device),
        "dtype": str(engine.dtype).replace("torch.", ""),
        "seconds": args.seconds,
        "interval_s": args.interval,
        "machine": f"{platform.machine()} {_cpu_name()} cores={len(os.sched_getaffinity(0))}".strip(),
        "scripted_text": full,
    }


def _cpu_name() -> str:
    """The CPU's model name (platform.processor() is empty on most Linux systems)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or ""
