"""``glmasr-live bench-streams --network --bus URL|local``: what the room bus costs a viewer.

For each N, right after the network run (one replica, no bus: the speakers' own server feeds
the viewers), the same recordings, start phases and pacing go through two replicas that share
their rooms through Redis (``serve --bus``): the speakers on replica A, ``--viewers`` viewer
sockets per room on A and as many on B. The figure is the network bench's (``serve_bench``):
end of speech → final seen by a viewer (its arrival at the viewer, on the speaker's clock,
minus the end of the last word it covers), p50/p95, for

- **one**: one replica, no bus (the network run's viewers);
- **other**: the other replica, through Redis (B's viewers), which is what a deployment of
  replicas gives a viewer whose speaker landed elsewhere;
- **same**: the speakers' replica, through Redis (A's viewers: with a bus every event goes
  through Redis, a replica's own speakers' too);

and the ratios bus / no bus, measured in the same run.

Where it runs: the two replicas are two servers in this process, each with its own event loop
thread, its own Redis connection and its own transcripts directory (B opens no stream, so they
share the one captioner); Redis is on loopback (``local``: a private ``redis-server`` started
for the run, without persistence). A network between the replicas and Redis adds its round
trips on top. Against a Redis of your own, the run's rooms are named ``busXXXXXX-nN-rK`` and
their keys are deleted at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from glmasr_live.devtools.serve_bench import BenchServer, NetworkPlan, run_network, transcripts_dir
from glmasr_live.devtools.streams_bench import Recording, RunRow
from glmasr_live.errors import ConfigError

UP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Replicas:
    a: BenchServer  # the speakers' replica
    b: BenchServer  # the other one: viewers only
    where: str  # the Redis as it may be printed (no user or password)
    version: str  # redis_version from INFO
    run: str  # this run's room-name prefix


@contextlib.contextmanager
def replicas(bus: str, captioner: Any, most: int, per_room: int) -> Iterator[Replicas]:
    """Two servers sharing rooms through ``bus`` (a ``redis://`` URL, or ``local``)."""
    from glmasr_live.server.bus import redacted

    with contextlib.ExitStack() as stack:
        url = stack.enter_context(local_redis()) if bus == "local" else bus
        tmp = Path(stack.enter_context(transcripts_dir()))
        a = stack.enter_context(BenchServer(captioner, tmp / "a", most, per_room, bus=url))
        b = stack.enter_context(BenchServer(captioner, tmp / "b", most, per_room, bus=url))
        where = "local redis-server" if bus == "local" else redacted(url)
        version = _wait_up(a, where)
        _wait_up(b, where)
        pair = Replicas(a, b, where, version, f"bus{secrets.token_hex(3)}")
        try:
            yield pair
        finally:
            _forget(pair)  # before the servers stop (the ExitStack's exits come after)


def _on_loop(server: BenchServer, coro: Any, timeout: float) -> Any:
    assert server.loop is not None
    return asyncio.run_coroutine_threadsafe(coro, server.loop).result(timeout)


def _wait_up(server: BenchServer, where: str) -> str:
    """Wait until the replica's bus is up; Redis's version. ConfigError when it never answers."""
    bus = server.ctx.bus

    async def up() -> str:
        while bus.state != "up":  # the bus has no "up" event to wait on; this is start-up only
            await asyncio.sleep(0.05)
        return str((await bus.redis.info("server")).get("redis_version", "?"))

    try:
        return str(_on_loop(server, asyncio.wait_for(up(), UP_TIMEOUT_S), UP_TIMEOUT_S + 5))
    except TimeoutError:
        raise ConfigError(f"--bus: {where} did not answer within {UP_TIMEOUT_S:g} s") from None


def _forget(pair: Replicas) -> None:
    """Delete the run's rooms' keys (a Redis of the user's own is left as it was)."""
    from glmasr_live.server.bus import PREFIX

    async def forget() -> None:
        redis = pair.a.ctx.bus.redis
        keys = [k async for k in redis.scan_iter(match=f"{PREFIX}{pair.run}-*", count=1000)]
        if keys:
            await redis.delete(*keys)

    with contextlib.suppress(Exception):  # best effort: the figures are already measured
        _on_loop(pair.a, forget(), 30)


@contextlib.contextmanager
def local_redis() -> Iterator[str]:
    """A private ``redis-server`` on a free loopback port, without persistence; its URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise ConfigError("--bus local needs redis-server on PATH (apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="glmasr-bench-redis-") as d:
        cmd = [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            d,
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_listening(proc, port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(0.02)  # the wait between tries, cut short if redis-server exits
            raise ConfigError(f"--bus local: redis-server exited with code {proc.returncode}")
    raise ConfigError(f"--bus local: redis-server did not listen within {UP_TIMEOUT_S:g} s")


def run_bus(pair: Replicas, recs: list[Recording], interval_s: float, plan: NetworkPlan, engine: Any,
            tag: str) -> RunRow:  # fmt: skip
    """The network run again, speakers on A, viewers on A and on B; the row is ``bus``."""
    bases = [pair.a.base, pair.b.base]
    row = run_network(pair.a, recs, interval_s, plan, engine, f"{pair.run}-{tag}", bases)
    row.scheduling = "bus"
    at = row.extra.pop("viewers_at")
    row.extra["same_replica"], row.extra["other_replica"] = at[pair.a.base], at[pair.b.base]
    return row


def compare(one: RunRow, bus: RunRow) -> dict[str, Any]:
    """The bus row against the network row (one replica, no bus) of the same N, same run."""

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(b / a, 2) if a and b is not None else None

    no_bus, other, same = one.extra, bus.extra["other_replica"], bus.extra["same_replica"]
    out: dict[str, Any] = {}
    for p in ("p50", "p95"):
        key = f"viewer_final_{p}"
        out[f"one_{p}"], out[f"other_{p}"], out[f"same_{p}"] = no_bus[key], other[key], same[key]
        out[f"other_x_{p}"], out[f"same_x_{p}"] = (
            ratio(no_bus[key], other[key]),
            ratio(no_bus[key], same[key]),
        )
    out["speaker_final_p95_one"], out["speaker_final_p95_bus"] = one.final_p95, bus.final_p95
    out["speaker_final_x_p95"] = ratio(one.final_p95, bus.final_p95)
    out["other_after_speaker_ms_p95"] = other["viewer_delay_ms_p95"]  # B's viewer after A's speaker socket
    out["finals_one"], out["finals_bus"] = one.finals, bus.finals
    out["lost_one"], out["lost_other"], out["lost_same"] = (
        no_bus["viewer_finals_lost"], other["viewer_finals_lost"], same["viewer_finals_lost"],
    )  # fmt: skip
    return out


def format_table(pairs: list[tuple[RunRow, RunRow]]) -> str:
    """Per N: viewer end of speech -> final, one replica vs the other replica through Redis."""

    def f(v: float | None, w: int = 7) -> str:
        return f"{'-' if v is None else f'{v:.2f}':>{w}}"

    head = (
        f"{'N':>4} | {'p50 one':>8}{'other':>7}{'x':>6} | {'p95 one':>8}{'other':>7}{'x':>6} | "
        f"{'same p95':>9}{'x':>6} | {'speaker p95 one':>16}{'bus':>6} | {'+ms p95':>8} | {'finals':>9}{'lost':>6}"
    )
    lines = [head, "-" * len(head)]
    for _, bus in pairs:
        x = bus.extra["vs_one_replica"]
        finals, lost = (
            f"{x['finals_one']}/{x['finals_bus']}",
            x["lost_one"] + x["lost_other"] + x["lost_same"],
        )
        lines.append(
            f"{bus.streams:>4} | {f(x['one_p50'], 8)}{f(x['other_p50'])}{f(x['other_x_p50'], 6)} | "
            f"{f(x['one_p95'], 8)}{f(x['other_p95'])}{f(x['other_x_p95'], 6)} | "
            f"{f(x['same_p95'], 9)}{f(x['same_x_p95'], 6)} | {f(x['speaker_final_p95_one'], 16)}"
            f"{f(x['speaker_final_p95_bus'], 6)} | {f(x['other_after_speaker_ms_p95'], 8)} | "
            f"{finals:>9}{lost:>6}"
        )
    return "\n".join(lines)
