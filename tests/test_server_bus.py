"""Replicas of ``glmasr-live serve`` sharing rooms through a real ``redis-server`` (``--bus``):
speakers split across replicas, viewers on each, late joiners, Redis restarted mid-meeting, a
replica killed with SIGKILL mid-meeting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest
import websockets
from serverkit import SR, RunningServer, ingest, pcm16
from websockets.exceptions import ConnectionClosed

pytest.importorskip("redis")
REDIS = shutil.which("redis-server")
pytestmark = pytest.mark.skipif(REDIS is None, reason="needs redis-server (apt-get install redis-server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A throwaway redis-server on a loopback port, without persistence (a restart empties it)."""

    def __init__(self, directory) -> None:
        self.port = _free_port()
        self.dir = directory
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.dir)]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path)
    r.start()
    yield r
    r.stop()


def finals(messages):
    return [m for m in messages if m.get("type") == "final"]


class Viewer:
    """A room feed reader collecting every message in the background."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.got: list[dict] = []
        self.hello: dict = {}

    async def __aenter__(self) -> Viewer:
        self.ws = await websockets.connect(self.url)
        self.hello = json.loads(await self.ws.recv())
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for m in self.ws:
                self.got.append(json.loads(m))

    async def wait(self, cond, timeout: float = 60) -> None:
        end = asyncio.get_running_loop().time() + timeout
        while not cond(self.got):
            assert asyncio.get_running_loop().time() < end, f"viewer {self.url}: {self.got[-5:]}"
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        self.task.cancel()


async def _health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return await r.json()


def _journal(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _assert_numbered_once(messages) -> None:
    seqs = [m["seq"] for m in messages if m.get("type") in ("partial", "final")]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs


def test_two_replicas_share_a_room_in_order_exactly_once_with_replay(captioner, speech, redis, tmp_path):
    with (
        RunningServer(captioner, tmp_path / "a", bus=redis.url) as a,
        RunningServer(captioner, tmp_path / "b", bus=redis.url) as b,
    ):

        async def main() -> tuple:
            async with (
                Viewer(a.ws("/v1/rooms/meet/captions")) as va,
                Viewer(b.ws("/v1/rooms/meet/captions")) as vb,
            ):
                assert va.hello["finals"] == [] and vb.hello["finals"] == []

                async def bob_later():
                    await asyncio.sleep(1.0)
                    return await ingest(b.ws("/v1/ingest?room=meet&name=Bob"), speech["bob"][0], pace=1.0)

                (alice, _), (bob, _) = await asyncio.gather(
                    ingest(a.ws("/v1/ingest?room=meet&name=Alice"), speech["alice"][0], pace=1.0), bob_later()
                )
                for v in (va, vb):
                    await v.wait(lambda got: len(finals(got)) >= 2)
                await asyncio.sleep(0.3)  # nothing more should come
            async with (
                Viewer(a.ws("/v1/rooms/meet/captions")) as la,
                Viewer(b.ws("/v1/rooms/meet/captions")) as lb,
            ):
                late = (la.hello["finals"], lb.hello["finals"])
            health = [await _health(s.http("/healthz")) for s in (a, b)]
            return va.got, vb.got, alice, bob, late, health

        seen_a, seen_b, alice, bob, late, health = asyncio.run(main())
    fa, fb = finals(seen_a), finals(seen_b)
    assert len(fa) == 2 and fa == fb, (fa, fb)  # each final once, the same on both replicas
    assert {f["speaker"] for f in fa} == {"Alice", "Bob"}
    _assert_numbered_once(seen_a)
    _assert_numbered_once(seen_b)
    by = {f["speaker"]: f for f in fa}
    # one room clock: Bob started about a second after Alice, on the other replica
    assert 0.4 < by["Bob"]["start"] - by["Alice"]["start"] < 1.8, by
    assert finals(alice)[0]["seq"] == by["Alice"]["seq"] and finals(bob)[0]["seq"] == by["Bob"]["seq"]
    for replay in late:
        assert [f["seq"] for f in replay] == [f["seq"] for f in fa]
    for d in ("a", "b"):  # every replica keeps the whole room's transcript
        assert [j["seq"] for j in _journal(tmp_path / d / "meet.jsonl")] == [f["seq"] for f in fa]
    assert [h["bus"] for h in health] == ["up", "up"]


def test_redis_restart_mid_meeting_reconnects_and_loses_nothing(captioner, speech, redis, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="glmasr_live.server.bus")
    with (
        RunningServer(captioner, tmp_path / "a", bus=redis.url) as a,
        RunningServer(captioner, tmp_path / "b", bus=redis.url) as b,
    ):

        async def main() -> tuple:
            async with Viewer(b.ws("/v1/rooms/meet/captions")) as vb:
                first, _ = await ingest(a.ws("/v1/ingest?room=meet&name=Alice"), speech["alice"][0], pace=2.0)
                await vb.wait(lambda got: len(finals(got)) >= 1)
                await asyncio.to_thread(redis.stop)
                await vb.wait(lambda got: any(m.get("status") == "bus_down" for m in got), 20)
                down = await _health(a.http("/healthz"))
                # Bob speaks on A while Redis is away: his final waits, in order, and arrives.
                task = asyncio.create_task(
                    ingest(a.ws("/v1/ingest?room=meet&name=Bob"), speech["bob"][0], pace=2.0)
                )
                await asyncio.sleep(1.0)
                await asyncio.to_thread(redis.start)
                await vb.wait(lambda got: any(m.get("status") == "bus_up" for m in got), 30)
                second, close = await task
                await vb.wait(lambda got: len(finals(got)) >= 2)
                up = await _health(a.http("/healthz"))
            return first, second, close, vb.got, down, up

        first, second, close, seen, down, up = asyncio.run(main())
    problems = [m for m in second if m.get("type") == "status" and m.get("status") != "behind"]
    assert close[0] == 1000 and not problems, problems
    fb = finals(seen)
    assert [f["speaker"] for f in fb] == ["Alice", "Bob"] and fb[1]["seq"] > fb[0]["seq"], fb
    assert finals(second)[0]["seq"] == fb[1]["seq"]
    _assert_numbered_once(seen)
    assert down["bus"] == "down" and up["bus"] == "up"
    assert [j["seq"] for j in _journal(tmp_path / "b" / "meet.jsonl")] == [f["seq"] for f in fb]
    assert not [r for r in caplog.records if r.exc_info], "no tracebacks"
    assert any("unreachable" in r.getMessage() for r in caplog.records)


def _start_replica(tmp_path, bus: str) -> tuple[subprocess.Popen, int]:
    cmd = [sys.executable, "-m", "glmasr_live", "serve", "--model", "demo", "--ws", "127.0.0.1:0",
           "--transcripts", str(tmp_path / "rooms-a"), "--bus", bus]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise AssertionError("serve did not start: " + "".join(lines))


async def _speak(url: str, audio: np.ndarray, stop_at: int | None = None) -> tuple[dict, float, list]:
    """Send ``audio`` paced; with ``stop_at`` stop sending there and return (the connection
    stays open until its replica dies). The hello, the last ack, every message."""
    got: list[dict] = []
    ws = await websockets.connect(url)
    hello = json.loads(await ws.recv())

    async def reader() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for m in ws:
                got.append(json.loads(m))

    task = asyncio.create_task(reader())
    end = len(audio) if stop_at is None else stop_at
    for i in range(0, end, 1600):
        await ws.send(pcm16(audio[i : min(i + 1600, end)]))
        await asyncio.sleep(0.05)
    if stop_at is None:
        await ws.send(json.dumps({"type": "end"}))
        await task
    else:
        await asyncio.sleep(0.5)  # let the acks come
    acks = [m["audio"] for m in got if m.get("type") == "ack"]
    return hello, (acks[-1] if acks else 0.0), got


def test_sigkill_a_replica_mid_meeting_its_speaker_carries_on_elsewhere(captioner, speech, redis, tmp_path):
    proc, port = _start_replica(tmp_path, redis.url)
    a_ws = f"ws://127.0.0.1:{port}"
    alice = np.concatenate([speech["alice"][0], speech["alice"][0]])
    cut = len(speech["alice"][0]) + int(len(speech["alice"][0]) * 0.5)  # in Alice's second utterance
    try:
        with RunningServer(captioner, tmp_path / "b", bus=redis.url) as b:

            async def main() -> tuple:
                async with (
                    Viewer(b.ws("/v1/rooms/meet/captions")) as vb,
                    Viewer(f"{a_ws}/v1/rooms/meet/captions") as va,
                ):
                    bob = asyncio.create_task(_speak(b.ws("/v1/ingest?room=meet&name=Bob"), speech["bob"][0]))
                    hello_a, acked, _ = await _speak(f"{a_ws}/v1/ingest?room=meet&name=Alice", alice, cut)
                    await va.wait(lambda got: any(f["speaker"] == "Alice" for f in finals(got)))
                    await bob
                    await vb.wait(lambda got: len(finals(got)) >= 2)
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(30)
                    rest = alice[int(acked * SR) :]
                    url = b.ws(f"/v1/ingest?room=meet&name=Alice&resume_at={acked}")
                    hello_b, _, resumed = await _speak(url, rest)
                    await vb.wait(lambda got: len(finals(got)) >= 3)
                return hello_a, hello_b, acked, va.got, vb.got, resumed

            hello_a, hello_b, acked, seen_a, seen_b, resumed = asyncio.run(main())
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stderr is not None:
            proc.stderr.close()
    assert abs(hello_b["offset"] - (hello_a["offset"] + acked)) < 1e-3, (hello_a, hello_b, acked)
    _assert_numbered_once(seen_b)
    fb = finals(seen_b)
    assert [f["speaker"] for f in fb].count("Alice") == 2 and len(fb) == 3, fb
    assert fb[-1]["seq"] == finals(resumed)[0]["seq"] and fb[-1]["speaker"] == "Alice"
    journal = _journal(tmp_path / "b" / "meet.jsonl")
    saw = {f["seq"] for f in finals(seen_a)} | {f["seq"] for f in fb}
    assert saw <= {j["seq"] for j in journal}, "every final any viewer saw is in the transcript"
    assert len({j["seq"] for j in journal}) == len(journal) == 3


def test_the_bus_url_is_logged_without_credentials():
    from glmasr_live.server.bus import redacted

    assert redacted("redis://user:s3cret@10.0.0.5:6380/2") == "redis://10.0.0.5:6380/2"
    assert redacted("rediss://:pw@redis.internal/0") == "rediss://redis.internal/0"
