"""Benchmark the caption broadcaster: latency with many subscribers, memory per subscriber.

The server runs in this process; the subscribers (websockets asyncio clients) run in separate
processes (``--procs``), so the clients' own work does not share the server's event loop. One
extra subscriber completes the handshake and never reads (``--stuck``), as in the test.

Latency = receive time in the subscriber process - publish time in the server process (same
machine, same clock, ``time.time()``), over every (event, subscriber) pair. Memory per subscriber
= server RSS after all subscribers joined and events flowed, minus RSS before, over the count.

    python scripts/bench_broadcast.py --subscribers 500 --events 200 --rate 20 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

from glmasr_live.captions.broadcast import BroadcastSettings, CaptionServer
from glmasr_live.events import CaptionEvent

TEXT = "今天的会议主要讨论实时字幕的延迟和稳定性 and how captions reach OBS overlays quickly."


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- subscriber process -------------------------------------------------------------------------


async def subscribers_main(url: str, count: int) -> None:
    from websockets.asyncio.client import connect

    latencies: list[tuple[int, float]] = []
    ready = 0

    async def one() -> None:
        nonlocal ready
        async with connect(url, open_timeout=120, compression=None) as ws:
            await ws.recv()  # hello
            ready += 1
            if ready == count:
                print("ready", flush=True)
            async for message in ws:
                now = time.time()
                event = json.loads(message)
                if event["type"] == "status":
                    return
                latencies.append((event["seq"], now - event["wall_time"]))

    sem = asyncio.Semaphore(64)  # connect in waves so that the SYN backlog never overflows

    async def gated() -> None:
        async with sem:
            task = asyncio.create_task(one())
            await asyncio.sleep(0.002)
        await task

    await asyncio.gather(*(gated() for _ in range(count)))
    print(json.dumps(latencies), flush=True)


def raw_subscribers_main(url: str, count: int) -> None:
    """Lean subscribers: plain sockets and one selector, timestamps taken at recv().

    Measures when an event reaches the subscriber's socket, without the per-message cost of
    an asyncio client library in one shared process (which otherwise dominates the figures).
    """
    import selectors

    from websockets.client import ClientProtocol
    from websockets.frames import Frame, Opcode
    from websockets.http11 import Response
    from websockets.uri import parse_uri

    uri = parse_uri(url)
    sel = selectors.DefaultSelector()
    protos: dict[int, ClientProtocol] = {}
    for _ in range(count):
        sock = socket.create_connection((uri.host, uri.port))
        proto = ClientProtocol(uri)
        proto.send_request(proto.connect())
        for data in proto.data_to_send():
            sock.sendall(data)
        while not any(isinstance(e, Response) for e in proto.events_received()):
            proto.receive_data(sock.recv(4096))
        sock.setblocking(False)
        sel.register(sock, selectors.EVENT_READ)
        protos[sock.fileno()] = proto
    print("ready", flush=True)
    latencies: list[tuple[int, float]] = []
    open_socks = count
    while open_socks:
        burst = []
        for key, _ in sel.select():
            sock = cast(socket.socket, key.fileobj)
            burst.append((sock, time.time(), sock.recv(1 << 16)))
        for sock, now, data in burst:  # parse after the whole burst: recv times stay honest
            proto = protos[sock.fileno()]
            proto.receive_data(data) if data else proto.receive_eof()
            for e in proto.events_received():
                if isinstance(e, Frame) and e.opcode is Opcode.TEXT:
                    event = json.loads(bytes(e.data))
                    if event["type"] == "status":
                        sel.unregister(sock)
                        sock.close()
                        open_socks -= 1
                        break
                    if event["type"] != "hello":
                        latencies.append((event["seq"], now - event["wall_time"]))
            else:
                for out in proto.data_to_send():  # pongs
                    if out:
                        sock.sendall(out)
    print(json.dumps(latencies), flush=True)


# -- server process -----------------------------------------------------------------------------


async def stuck_client(port: int) -> socket.socket:
    """Handshake, then never read again."""
    from websockets.client import ClientProtocol
    from websockets.http11 import Response
    from websockets.uri import parse_uri

    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}/"))
    proto.send_request(proto.connect())
    for data in proto.data_to_send():
        await loop.sock_sendall(sock, data)
    while not any(isinstance(e, Response) for e in proto.events_received()):
        proto.receive_data(await loop.sock_recv(sock, 512))
    return sock


async def bench(args: argparse.Namespace) -> dict[str, object]:
    server = CaptionServer(
        BroadcastSettings(port=0, ping_interval=args.ping, ping_timeout=args.ping, close_timeout=1.0)
    )
    await server.start()
    gc.collect()
    rss_before = rss_bytes()

    stuck = await stuck_client(server.port) if args.stuck else None
    per_proc = [
        args.subscribers // args.procs + (i < args.subscribers % args.procs) for i in range(args.procs)
    ]
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "glmasr_live.devtools.broadcast_bench",
            "--client",
            server.url,
            "--subscribers",
            str(n),
            # the children must run the reader asked for (they once always ran websockets)
            "--reader",
            args.reader,
            stdout=subprocess.PIPE,
            limit=1 << 26,
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        )
        for n in per_proc
    ]
    t0 = time.perf_counter()
    for p in procs:
        assert p.stdout is not None
        assert (await p.stdout.readline()).strip() == b"ready"
    connect_s = time.perf_counter() - t0
    expected = args.subscribers + (1 if stuck else 0)
    assert server.subscriber_count == expected, (server.subscriber_count, expected)

    fanout: list[float] = []
    stuck_dropped_at = None
    t_start = time.perf_counter()
    for seq in range(args.events):
        kind = "final" if seq % 5 == 4 else "partial"
        tentative = "" if kind == "final" else "maybe"
        event = CaptionEvent(kind, seq, seq // 5, 0.0, 1.0, TEXT, tentative, TEXT, 1.0, time.time())  # type: ignore[arg-type]
        t = time.perf_counter()
        server.publish(event)
        fanout.append(time.perf_counter() - t)
        await asyncio.sleep(1 / args.rate)
        if stuck and stuck_dropped_at is None and server.subscriber_count == args.subscribers:
            stuck_dropped_at = time.perf_counter() - t_start
    gc.collect()
    rss_after = rss_bytes()
    server.publish(
        CaptionEvent("status", args.events, -1, 0, 0, "", "", "", 0, time.time(), "bench_end", "done")
    )

    pairs: list[tuple[int, float]] = []
    for p in procs:
        assert p.stdout is not None
        pairs += json.loads(await p.stdout.readline())
        await p.wait()
    await server.close()
    if stuck:
        stuck.close()
    assert len(pairs) == args.subscribers * args.events, "a subscriber missed events"
    latencies = [lat for _, lat in pairs]
    by_event: dict[int, list[float]] = {}
    for seq, lat in pairs:
        by_event.setdefault(seq, []).append(lat)
    first = [min(v) for v in by_event.values()]
    last = [max(v) for v in by_event.values()]
    return {
        "subscribers": args.subscribers,
        "subscriber_processes": args.procs,
        "reader": args.reader,
        "stuck_subscriber": bool(stuck),
        "events": args.events,
        "rate_per_s": args.rate,
        "message_bytes": len(event.to_json().encode()),
        "connect_all_s": round(connect_s, 3),
        "latency_p50_ms": round(percentile(latencies, 0.50) * 1e3, 2),
        "latency_p99_ms": round(percentile(latencies, 0.99) * 1e3, 2),
        "latency_max_ms": round(max(latencies) * 1e3, 2),
        "first_subscriber_p50_ms": round(percentile(first, 0.5) * 1e3, 2),
        "last_subscriber_p50_ms": round(percentile(last, 0.5) * 1e3, 2),
        "publish_fanout_p50_ms": round(percentile(fanout, 0.50) * 1e3, 2),
        "publish_fanout_p99_ms": round(percentile(fanout, 0.99) * 1e3, 2),
        "server_rss_delta_mib": round((rss_after - rss_before) / 2**20, 2),
        "memory_per_subscriber_kib": round((rss_after - rss_before) / expected / 1024, 1),
        "stuck_dropped_after_s": None if stuck_dropped_at is None else round(stuck_dropped_at, 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscribers", type=int, default=500)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0, help="events per second")
    ap.add_argument("--procs", type=int, default=1, help="subscriber processes")
    ap.add_argument("--no-stuck", dest="stuck", action="store_false", help="no never-reading subscriber")
    ap.add_argument("--ping", type=float, default=2.0, help="server ping interval and timeout, s")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--reader",
        choices=("websockets", "raw"),
        default="websockets",
        help="subscriber implementation: websockets asyncio clients, or lean sockets + selector",
    )
    ap.add_argument("--client", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client and args.reader == "raw":
        raw_subscribers_main(args.client, args.subscribers)
        return
    if args.client:
        asyncio.run(subscribers_main(args.client, args.subscribers))
        return
    result = asyncio.run(bench(args))
    width = max(map(len, result))
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
