"""Replicas of ``glmasr-live serve`` sharing rooms through a real ``redis-server`` (``--bus``):
speakers split across replicas, viewers on each, late joiners, Redis restarted mid-meeting, a
replica process killed with SIGKILL mid-meeting and restarted, and a replica that takes its
bus (with a password) from its TOML config file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import socket
import subprocess
import time

import aiohttp
import numpy as np
import pytest
import websockets
from serverkit import SR, RunningServer, ServeProcess, ingest, pcm16
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

    def __init__(self, directory, password: str | None = None) -> None:
        self.port = _free_port()
        self.dir = directory
        self.password = password
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
               "--dir", str(self.dir), *(["--requirepass", self.password] if self.password else [])]  # fmt: skip
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


class Feed:
    """A websocket client collecting every message in the background; ``wait`` wakes on each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.got: list[dict] = []
        self.hello: dict = {}
        self.closed = False
        self._new = asyncio.Event()

    async def __aenter__(self):
        self.ws = await websockets.connect(self.url)
        self.hello = json.loads(await self.ws.recv())
        self.task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for m in self.ws:
                self.got.append(json.loads(m))
                self._new.set()
        self.closed = True
        self._new.set()

    async def wait(self, cond, timeout: float = 60) -> None:
        """Until ``cond(messages)`` holds, woken by each message (no polling)."""
        try:
            async with asyncio.timeout(timeout):
                while not cond(self.got):
                    assert not self.closed, f"{self.url} closed: {self.got[-5:]}"
                    self._new.clear()
                    await self._new.wait()
        except TimeoutError:
            raise AssertionError(f"{self.url}: {self.got[-5:]}") from None

    async def wait_closed(self, timeout: float = 60) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), timeout)

    async def __aexit__(self, *exc) -> None:
        await self.ws.close()
        self.task.cancel()


class Speaker(Feed):
    """An ingest client: audio at twice real time (the live limit allows it), its acks."""

    async def send(self, audio: np.ndarray) -> None:
        for i in range(0, len(audio), 1600):  # 0.1 s frames every 0.05 s
            await self.ws.send(pcm16(audio[i : i + 1600]))
            await asyncio.sleep(0.05)

    @property
    def acked(self) -> float:
        return max((m["audio"] for m in self.got if m.get("type") == "ack"), default=0.0)

    async def end(self) -> None:
        """``{"type":"end"}``: the last final comes, then the server closes."""
        await self.ws.send(json.dumps({"type": "end"}))
        await self.wait_closed()


async def _health(url: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return await r.json()


async def _get(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        assert r.status == 200, r.status
        return await r.text()


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
                Feed(a.ws("/v1/rooms/meet/captions")) as va,
                Feed(b.ws("/v1/rooms/meet/captions")) as vb,
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
                Feed(a.ws("/v1/rooms/meet/captions")) as la,
                Feed(b.ws("/v1/rooms/meet/captions")) as lb,
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
            async with Feed(b.ws("/v1/rooms/meet/captions")) as vb:
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


def _replica(tmp_path, name: str, bus: str) -> ServeProcess:
    return ServeProcess(tmp_path, "--model", "demo", "--transcripts", str(tmp_path / name), "--bus", bus)


async def _meeting_until_a_dies(a: ServeProcess, b: ServeProcess, vb: Feed, alice: np.ndarray,
                                bob: np.ndarray, cut: int) -> tuple[list, Speaker]:  # fmt: skip
    """Bob speaks on B, Alice on A; viewers on both. A is SIGKILLed in Alice's second utterance,
    once both viewers saw the first finals. What A's viewer saw, and Alice's side."""
    async with (
        Feed(a.ws("/v1/rooms/meet/captions")) as va,
        Speaker(b.ws("/v1/ingest?room=meet&name=Bob")) as sb,
        Speaker(a.ws("/v1/ingest?room=meet&name=Alice")) as sa,
    ):
        await asyncio.gather(sb.send(bob), sa.send(alice[:cut]))
        await sb.end()
        await sa.wait(lambda _: sa.acked > cut / SR - 0.3)  # acks come every 0.25 s or so
        for v in (va, vb):
            await v.wait(lambda got: {f["speaker"] for f in finals(got)} == {"Alice", "Bob"})
        a.kill()
        await sa.wait_closed()  # the socket went down with its replica
        await va.wait_closed()
    return va.got, sa


def test_sigkill_a_replica_mid_meeting_then_restart_it(speech, redis, tmp_path):
    """The issue's check: killing a replica with SIGKILL mid-meeting loses no final any viewer
    saw; its speaker reconnects to the other replica with ``resume_at`` (the last ack) and goes
    on in the same room, one numbering; the replica, restarted, serves the whole room."""
    alice = np.concatenate([speech["alice"][0], speech["alice"][0]])
    cut = len(speech["alice"][0]) + len(speech["alice"][0]) // 2  # in Alice's second utterance
    a, b = _replica(tmp_path, "a", redis.url), _replica(tmp_path, "b", redis.url)
    procs = [a, b]
    try:
        a.started()
        b.started()

        async def main() -> tuple:
            async with Feed(b.ws("/v1/rooms/meet/captions")) as vb:  # on through all of it
                seen_a, sa = await _meeting_until_a_dies(a, b, vb, alice, speech["bob"][0], cut)
                before_b = list(vb.got)
                rest = alice[round(sa.acked * SR) :]
                async with Speaker(b.ws(f"/v1/ingest?room=meet&name=Alice&resume_at={sa.acked}")) as resumed:
                    await resumed.send(rest)
                    await resumed.end()
                await vb.wait(lambda got: len(finals(got)) >= 3)
                procs.append(a2 := _replica(tmp_path, "a", redis.url))  # A again, its own directory
                a2.started()
                # Before anyone opens the room on it: the restarted replica catches its journal up.
                transcript = await _get(a2.http("/v1/rooms/meet/transcript.jsonl"))
                async with Feed(a2.ws("/v1/rooms/meet/captions")) as late:
                    async with Speaker(a2.ws("/v1/ingest?room=meet&name=Bob")) as again:
                        await again.send(speech["bob"][0])
                        await again.end()
                    await vb.wait(lambda got: len(finals(got)) >= 4)
                    await late.wait(lambda got: len(finals(got)) >= 1)
            return seen_a, before_b, vb.got, sa, resumed, transcript, late, again, a2

        seen_a, before_b, seen_b, sa, resumed, transcript, late, again, a2 = asyncio.run(main())
        assert a2.stop() == 0
    finally:
        for proc in procs:
            proc.close()
    room = finals(seen_b)
    assert [f["speaker"] for f in room].count("Alice") == 2 and len(room) == 4, room
    _assert_numbered_once(seen_b)  # the merged feed: every seq once, strictly increasing
    seen = {(f["seq"], f["text"]) for f in finals(seen_a) + finals(before_b)}
    assert seen <= {(f["seq"], f["text"]) for f in room}, "a final a viewer saw before the kill is gone"
    # Alice carried on where her last ack was, on the room's one clock, in the same numbering.
    assert abs(resumed.hello["offset"] - (sa.hello["offset"] + sa.acked)) < 1e-3, (sa.hello, resumed.hello)
    assert finals(resumed.got)[0]["seq"] == room[2]["seq"] > max(s for s, _ in seen)
    assert finals(again.got)[0]["seq"] == room[3]["seq"] and again.ws.close_code == 1000
    for journal in (tmp_path / "b" / "meet.jsonl", tmp_path / "a" / "meet.jsonl"):
        assert [(j["seq"], j["text"]) for j in _journal(journal)] == [(f["seq"], f["text"]) for f in room]
    # The restarted replica: its transcript download and a late joiner's replay hold the room.
    assert [json.loads(line)["seq"] for line in transcript.splitlines()] == [f["seq"] for f in room[:3]]
    assert [f["seq"] for f in late.hello["finals"]] == [f["seq"] for f in room[:3]]
    assert finals(late.got) == room[3:]


def _write_config(path, **values) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))


def test_a_replica_takes_its_bus_from_the_toml_file_and_never_shows_the_password(tmp_path):
    secret = "s3cret-pw-8271"
    r = Redis(tmp_path, password=secret)
    r.start()
    bus = f"redis://:{secret}@127.0.0.1:{r.port}/0"
    # The default file, $XDG_CONFIG_HOME/glmasr-live/serve.toml: no flag names the bus.
    _write_config(tmp_path / "xdg" / "glmasr-live" / "serve.toml", model="demo", bus=bus,
                  transcripts=str(tmp_path / "rooms"))  # fmt: skip
    proc = ServeProcess(tmp_path)
    try:
        proc.started()

        async def main() -> tuple[dict, str, bool]:
            async with asyncio.timeout(30):
                while (health := await _health(proc.http("/healthz")))["bus"] != "up":
                    await asyncio.sleep(0.1)  # another process: its state can only be asked for
            text = await _get(proc.http("/healthz"))
            async with Feed(proc.ws("/v1/rooms/cfg/captions")):  # the room is on that Redis
                import redis.asyncio as aioredis

                client = aioredis.from_url(bus)
                shared = bool(await client.exists("glmasr-live:room:cfg:epoch"))
                await client.aclose()
            return health, text, shared

        health, text, shared = asyncio.run(main())
        assert proc.stop() == 0
    finally:
        proc.close()
        r.stop()
    assert health["bus"] == "up" and health["model"] == "demo" and health["lag"] == 0.0, health
    assert shared and (tmp_path / "rooms").is_dir()
    assert f"room bus:        redis://127.0.0.1:{r.port}/0" in proc.stderr, proc.stderr
    assert secret not in proc.stderr and secret not in text


def test_serve_options_from_a_config_file_flags_win(tmp_path, monkeypatch):
    from glmasr_live.cli import build_parser
    from glmasr_live.commands.serve import resolve, server_settings
    from glmasr_live.server.settings import ServerSettings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "empty"))
    conf = tmp_path / "serve.toml"
    _write_config(conf, bus="redis://:pw@10.0.0.5:6379/1", ws="0.0.0.0:9000", idle=5,
                  **{"max-streams": 8, "allow-host": ["a.example", "b.example"], "vad_sensitivity": 0.7})  # fmt: skip
    parse = build_parser().parse_args
    args = resolve(parse(["serve", "--config", str(conf), "--max-streams", "64", "--interval", "0.25"]))
    s = server_settings(args)
    assert s.max_streams == 64, "a flag wins over the file, even when it names the default"
    assert (s.host, s.port, s.idle_s, s.bus) == ("0.0.0.0", 9000, 5.0, "redis://:pw@10.0.0.5:6379/1")
    assert s.allowed_hosts == ("a.example", "b.example")
    assert (args.vad_sensitivity, args.interval, args.model) == (0.7, 0.25, "zai-org/GLM-ASR-Nano-2512")
    d, none = ServerSettings(), server_settings(resolve(parse(["serve"])))  # no file: the defaults
    assert (none.host, none.port, none.max_streams, none.idle_s, none.bus) == (
        d.host,
        d.port,
        d.max_streams,
        d.idle_s,
        None,
    )


@pytest.mark.parametrize(
    ("line", "words"),
    [('max-streams = "x"', "max-streams = 'x': expected int"), ("interval = -1", "interval = -1: must be > 0"),
     ("nope = 1", "unknown key(s): nope"), ('dtype = "int8"', "dtype = 'int8': choose from"),
     ('bus = "http://:s3cret@h/0"', "--bus: give a redis://"), ("publish-token = 5", "publish-token = ...")],
)  # fmt: skip
def test_a_bad_config_file_is_one_line_that_never_shows_a_secret(tmp_path, capsys, line, words):
    from glmasr_live.cli import main

    (tmp_path / "serve.toml").write_text(line + "\n")
    assert main(["serve", "--config", str(tmp_path / "serve.toml")]) == 2
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1 and "s3cret" not in err, err


def test_the_bus_url_is_logged_without_credentials():
    from glmasr_live.server.bus import redacted

    assert redacted("redis://user:s3cret@10.0.0.5:6380/2") == "redis://10.0.0.5:6380/2"
    assert redacted("rediss://:pw@redis.internal/0") == "rediss://redis.internal/0"
