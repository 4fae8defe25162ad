"""``glmasr-live bench-streams``: concurrent live streams on one model, batched vs one at a time."""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
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
        "network / in-process ratios measured in the same run. --bus: and again through two "
        "replicas sharing rooms through Redis, a viewer on the other replica vs one replica.",
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
    g.add_argument("--bus", default=None, metavar="redis://HOST:PORT/DB|local",
                   help="also run each N through two replicas sharing rooms through this Redis (local: "
                   "a private redis-server for the run): end of speech -> final at a viewer on the "
                   "other replica vs on one replica without bus, ratio in the same run (implies --network)")  # fmt: skip
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
    from glmasr_live.commands.serve import bus_url
    from glmasr_live.devtools import bench, streams_bench

    if args.bus is not None:
        args.network = True  # the bus rows are compared with the network rows (one replica)
        if args.bus != "local":
            bus_url(args.bus)
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
        rows = _run_counts(args, counts, schedulings, recs, make_decoder, engine, net)
    by = {(r.scheduling, r.streams): r for r in rows}
    pairs = [(by["batched", r.streams], r) for r in rows if r.scheduling == "network"]
    buses = [(by["network", r.streams], r) for r in rows if r.scheduling == "bus"]
    meta = _meta(args, engine, full)
    extra = [s for s in ("network", "bus") if any(r.scheduling == s for r in rows)]
    held = {s: streams_bench.largest_held(rows, s) for s in [*schedulings, *extra]}
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
    if buses:
        _print_bus(args, meta, net, buses)
    if args.json:
        args.json.write_text(streams_bench.to_json(rows, meta))
    return 0


def _run_counts(args: argparse.Namespace, counts: list[int], schedulings: list[str], recs: list[Any],
                make_decoder: Any, engine: Any, net: Any) -> list[Any]:  # fmt: skip
    """Every N: each scheduling in-process, then (with ``net``) the network run, then (with a
    bus) the bus run, in that order."""
    from glmasr_live.devtools import streams_bench

    rows: list[Any] = []
    going = set(schedulings) | ({"network"} if net else set())
    for n in counts:
        audio_s = sum(len(r.audio) for r in recs[:n]) / streams_bench.SAMPLE_RATE
        local: dict[str, Any] = {}
        for sch in [*schedulings, "network"]:
            if sch not in going:
                continue
            print(f"{sch}: {n} stream(s) ...", file=sys.stderr, flush=True)
            if sch == "network":
                new = _network_rows(args, net, recs[:n], local["batched"], engine)  # and the bus row
            else:
                cpu0 = time.process_time()  # for the network / in-process CPU ratio
                row = streams_bench.run_streams(make_decoder, recs[:n], sch, args.interval, engine)
                row.extra["process_cpu_per_audio_s"] = round((time.process_time() - cpu0) / audio_s, 4)
                local[sch], new = row, [row]
            rows += new
            for row in new:
                print(streams_bench.format_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
            if args.streams is None and not new[0].held:
                going.discard(sch)  # it broke: larger N only for the others
        if not going or (net and "batched" not in going):
            break
    return rows


def _network_rows(args: argparse.Namespace, net: Any, recs: list[Any], local: Any, engine: Any) -> list[Any]:
    """The network row of one N (against ``local``, in-process batched), then the bus row."""
    from glmasr_live.devtools import bus_bench, serve_bench

    n = len(recs)
    row = serve_bench.run_network(net.server, recs, args.interval, _plan(args), engine, f"n{n}")
    row.extra["vs_in_process"] = serve_bench.compare(local, row)
    if net.bus is None:
        return [row]
    print(f"bus: {n} stream(s) ...", file=sys.stderr, flush=True)
    bus = bus_bench.run_bus(net.bus, recs, args.interval, _plan(args), engine, f"n{n}")
    bus.extra["vs_one_replica"] = bus_bench.compare(row, bus)
    return [row, bus]


@dataclass(frozen=True)
class _Network:
    server: Any  # serve_bench.BenchServer: one replica, no bus
    bus: Any  # bus_bench.Replicas with --bus, else None


@contextlib.contextmanager
def _network(args: argparse.Namespace, engine: Any, make_decoder: Any, most: int) -> Iterator[Any]:
    """The real servers for ``--network`` (None without it): one Captioner on the bench's engine,
    one server without bus, and with ``--bus`` two replicas sharing rooms through Redis."""
    if not args.network:
        yield None
        return
    from glmasr_live.devtools import bus_bench, serve_bench
    from glmasr_live.policy import PolicySettings

    cap = serve_bench.BenchCaptioner(engine=engine, policy=PolicySettings(interval_s=args.interval))
    cap.scheduler.make_decoder = make_decoder  # the in-process runs' decoders (--model full's script)
    try:
        with contextlib.ExitStack() as stack:
            tmp = stack.enter_context(serve_bench.transcripts_dir())
            srv = stack.enter_context(serve_bench.BenchServer(cap, Path(tmp), most, args.streams_per_room))
            bus = None
            if args.bus is not None:
                bus = stack.enter_context(bus_bench.replicas(args.bus, cap, most, args.streams_per_room))
            yield _Network(srv, bus)
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


def _print_bus(args: argparse.Namespace, meta: dict[str, Any], net: Any, buses: list[Any]) -> None:
    from glmasr_live.devtools import bus_bench

    where = f"{net.bus.where} (Redis {net.bus.version})"
    meta["bus"] = {
        "redis": where, "viewers_per_room_per_replica": args.viewers,
        "replicas": "two servers in this process (own event loops, Redis connections, transcripts); speakers on A",
        "ratios": [{"streams": b.streams, **b.extra["vs_one_replica"]} for _, b in buses],
    }  # fmt: skip
    print(f"\nbus: replicas A and B share rooms through {where}; speakers on A, {args.viewers} viewer(s) "
          "per room on each. End of speech -> final at a viewer: one = one replica, no bus (the "
          "network rows); other = on B, through Redis; same = on A, through Redis; x = / one, same "
          "run; +ms = B's viewer after the speaker's own socket")  # fmt: skip
    print(bus_bench.format_table(buses))


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
