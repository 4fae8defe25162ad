"""Caption broadcast with real clients on loopback: websockets, aiohttp and a raw socket."""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, InvalidStatus
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.uri import parse_uri

from glmasr_live.captions.broadcast import BroadcastSettings, CaptionServer
from glmasr_live.errors import ServerError
from glmasr_live.events import CaptionEvent

SCHEMA = Path(__file__).resolve().parents[1] / "assets" / "caption-event.schema.json"


def ev(seq: int, kind: str = "final", text: str = "hello", utterance: int | None = None) -> CaptionEvent:
    u = seq if utterance is None else utterance
    if kind == "partial":
        return CaptionEvent("partial", seq, u, 0.5, 1.5, text, "maybe", text + " maybe", 1.6, time.time())
    if kind == "status":
        return CaptionEvent("status", seq, -1, 0, 0, "", "", "", 2.0, time.time(), "behind", "falling behind")
    return CaptionEvent("final", seq, u, 0.5, 1.5, text, "", text, 1.6, time.time())


def run(main: Callable[[CaptionServer], Awaitable[None]], **settings: Any) -> None:
    async def wrapper() -> None:
        server = CaptionServer(BroadcastSettings(**{"port": 0, **settings}))
        await server.start()
        try:
            await main(server)
        finally:
            await server.close()

    asyncio.run(wrapper())


class RawClient:
    """A websocket client on a plain socket (websockets' sans-I/O protocol): reads only when told."""

    def __init__(self, sock: socket.socket, proto: ClientProtocol) -> None:
        self.sock, self.proto = sock, proto
        self.messages: list[dict[str, Any]] = []
        self.closed = False

    @classmethod
    async def connect(cls, port: int, rcvbuf: int = 4096, path: str = "/") -> RawClient:
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # fills fast when not read
        await loop.sock_connect(sock, ("127.0.0.1", port))
        proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        proto.send_request(proto.connect())
        self = cls(sock, proto)
        await self._flush()
        while not any(isinstance(e, Response) for e in self._feed(await loop.sock_recv(sock, 512))):
            pass
        return self

    def _feed(self, data: bytes) -> list[Frame | Request | Response]:
        if data:
            self.proto.receive_data(data)
        else:
            self.proto.receive_eof()
            self.closed = True
        events = self.proto.events_received()
        for e in events:
            if isinstance(e, Frame) and e.opcode is Opcode.TEXT:
                self.messages.append(json.loads(bytes(e.data)))
        return events

    async def _flush(self) -> None:
        for data in self.proto.data_to_send():
            if data:
                await asyncio.get_running_loop().sock_sendall(self.sock, data)

    async def read_until(self, done: Callable[[RawClient], bool], timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not done(self) and not self.closed:
                try:
                    data = await loop.sock_recv(self.sock, 65536)
                except ConnectionResetError:
                    data = b""
                self._feed(data)
                await self._flush()  # pongs

    def close(self) -> None:
        self.sock.close()


def test_hello_with_backlog_then_events_match_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))

    async def main(server: CaptionServer) -> None:
        for i in range(5):
            server.publish(ev(i, text=f"final {i} 你好"))
        server.publish(ev(5, "partial", "in progress"))
        async with connect(server.url) as ws:
            hello = json.loads(await ws.recv())
            assert hello["type"] == "hello" and hello["v"] == 2
            assert [f["seq"] for f in hello["finals"]] == [2, 3, 4]  # the last N finals
            assert hello["finals"][-1]["text"] == "final 4 你好"
            partial = json.loads(await ws.recv())
            assert partial["seq"] == 5 and partial["tentative"] == "maybe"
            server.publish(ev(6, "status"))
            server.publish(ev(7, text="done"))
            received = [hello, partial, json.loads(await ws.recv()), json.loads(await ws.recv())]
            assert [m.get("seq") for m in received[1:]] == [5, 6, 7]
            for m in received:
                validator.validate(m)
            # The schema is strict enough to catch drift: a final with a tentative tail, a
            # status line on a caption, an unknown field.
            bad_final = {**received[3], "tentative": "not allowed"}
            bad_partial = {**received[1], "status": "behind", "message": "x"}
            assert not validator.is_valid(bad_final) and not validator.is_valid(bad_partial)
            assert not validator.is_valid({**received[3], "speakr": "A"})
            assert server.subscriber_count == 1

    run(main, backlog_finals=3)


def test_aiohttp_client_and_publish_from_a_thread() -> None:
    async def main(server: CaptionServer) -> None:
        origin = server.overlay_url.rsplit("/overlay", 1)[0]
        async with aiohttp.ClientSession() as session, session.ws_connect(server.url, origin=origin) as ws:
            assert (await ws.receive_json())["type"] == "hello"

            def asr_worker() -> None:
                for i in range(20):
                    server.publish_threadsafe(ev(i, text=f"t{i}"))

            worker = threading.Thread(target=asr_worker, name="fake-asr-worker")
            worker.start()
            got = [(await ws.receive_json())["seq"] for _ in range(20)]
            worker.join()
            assert got == list(range(20))
            await ws.send_str("subscribers cannot change anything")
            server.publish(ev(20))
            assert (await ws.receive_json())["seq"] == 20

    run(main)


def test_close_flushes_finals_then_going_away() -> None:
    async def main(server: CaptionServer) -> None:
        async with connect(server.url) as ws:
            await ws.recv()
            server.publish(ev(0, text="last words"))
            await server.close()
            assert json.loads(await ws.recv())["text"] == "last words"
            with pytest.raises(ConnectionClosed):
                await ws.recv()
            assert ws.close_code == 1001

    run(main)


def test_oversized_frame_closes_with_1009() -> None:
    async def main(server: CaptionServer) -> None:
        async with connect(server.url, max_size=None) as ws:
            await ws.recv()
            await ws.send("x" * 10_000)
            with pytest.raises(ConnectionClosedError) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009

    run(main, max_size=4096)


def _status(exc: BaseException) -> int:
    if isinstance(exc, InvalidStatus):
        return exc.response.status_code
    assert isinstance(exc, aiohttp.WSServerHandshakeError)
    return exc.status


def test_origin_host_and_token_rejections_are_403() -> None:
    async def main(server: CaptionServer) -> None:
        port = server.port
        base = f"ws://127.0.0.1:{port}/ws"
        for kwargs in (
            {"origin": "http://evil.example"},  # cross-site websocket hijacking
            {"origin": f"http://127.0.0.1:{port + 1}"},  # another local origin
            {"origin": f"http://203.0.113.5:{port}"},  # a page served from another address, same port
            {"additional_headers": {"Host": f"rebound.example:{port}"}},  # DNS rebinding
        ):
            with pytest.raises(InvalidStatus) as info:
                await connect(base, **kwargs)  # type: ignore[arg-type]
            assert _status(info.value) == 403, kwargs
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.WSServerHandshakeError) as aio:
                await session.ws_connect(base, origin="https://attacker.example")
            assert _status(aio.value) == 403
        # Our own overlay origin, under either loopback name, and a non-browser client are fine.
        for origin in (f"http://127.0.0.1:{port}", f"http://localhost:{port}", None):
            async with connect(base, origin=origin) as ws:  # type: ignore[arg-type]
                assert json.loads(await ws.recv())["type"] == "hello"

    run(main)


def test_token_required_when_exposed() -> None:
    async def main(server: CaptionServer) -> None:
        assert server.token and server.token_generated
        assert server.token in server.overlay_url and server.token in server.url
        base = f"ws://127.0.0.1:{server.port}/"
        for url, headers in (
            (base, {}),
            (base + "?token=wrong", {}),
            (base, {"Authorization": "Bearer wrong"}),
        ):
            with pytest.raises(InvalidStatus) as info:
                await connect(url, additional_headers=headers)
            assert _status(info.value) == 403
        async with connect(base + "?token=" + server.token) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
        async with connect(base, additional_headers={"Authorization": f"Bearer {server.token}"}) as ws:
            assert json.loads(await ws.recv())["type"] == "hello"
        # Right token but a foreign browser origin: still refused.
        with pytest.raises(InvalidStatus):
            await connect(base + "?token=" + server.token, origin="http://evil.example")  # type: ignore[arg-type]

    run(main, host="0.0.0.0")


def test_http_routes() -> None:
    async def main(server: CaptionServer) -> None:
        root = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            async with session.get(root + "/overlay?size=40") as r:
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/html")
                assert r.headers["Referrer-Policy"] == "no-referrer"
                assert "new WebSocket" in await r.text()
            async with session.get(root + "/healthz") as r:
                assert r.status == 200 and (await r.json())["status"] == "ok"
            for path in ("/nope", "/overlay.js", "/../etc/passwd", "/healthz/x"):
                async with session.get(root + path) as r:
                    assert r.status == 404, path
            async with session.get(root + "/overlay", headers={"Host": "evil.example"}) as r:
                assert r.status == 403

    run(main)


def test_port_in_use_is_a_server_error() -> None:
    async def main(server: CaptionServer) -> None:
        other = CaptionServer(BroadcastSettings(port=server.port))
        with pytest.raises(ServerError, match=f"port {server.port} on 127.0.0.1 is in use"):
            await other.start()

    run(main)


def test_slow_client_gets_every_final_and_the_latest_partial() -> None:
    async def main(server: CaptionServer) -> None:
        raw = await RawClient.connect(server.port)
        await asyncio.sleep(0.05)
        big = "字" * 1000  # 3 KB of UTF-8 per event: the tiny buffers fill after a few events
        finals, partials = [], 0
        for seq in range(200):
            if seq % 20 == 19:
                server.publish(ev(seq, text=f"final {seq} {big}", utterance=seq // 20))
                finals.append(seq)
            else:
                server.publish(ev(seq, "partial", f"p{seq} {big}", utterance=seq // 20))
                partials += 1
            await asyncio.sleep(0)
        server.publish(ev(200, "partial", "the latest", utterance=10))
        await raw.read_until(lambda c: bool(c.messages) and c.messages[-1].get("seq") == 200)
        seqs = [m["seq"] for m in raw.messages[1:]]
        assert seqs == sorted(seqs)
        assert [m["seq"] for m in raw.messages if m["type"] == "final"] == finals
        got_partials = sum(1 for m in raw.messages if m["type"] == "partial")
        assert got_partials < partials  # stale partials were replaced while it lagged
        assert raw.messages[-1]["committed"] == "the latest"
        raw.close()

    run(main, write_limit=1024, send_buffer=4096, queue_size=64)


def test_client_whose_finals_backlog_overflows_is_dropped() -> None:
    async def main(server: CaptionServer) -> None:
        raw = await RawClient.connect(server.port)
        await asyncio.sleep(0.05)
        for seq in range(40):
            server.publish(ev(seq, text="字" * 1000))
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)
        assert server.subscriber_count == 0 and server.dropped == 1
        raw.close()

    run(main, write_limit=1024, send_buffer=4096, queue_size=8)


async def _subscriber(url: str, log: dict[int, float], ready: asyncio.Event) -> None:
    async with connect(url, open_timeout=60) as ws:
        await ws.recv()  # hello
        ready.set()
        async for message in ws:
            log[json.loads(message)["seq"]] = time.perf_counter()


def test_500_subscribers_one_stuck_others_flat_and_stuck_dropped() -> None:
    n, events, ping = 500, 60, 2.0

    async def main(server: CaptionServer) -> None:
        stuck = await RawClient.connect(server.port, rcvbuf=1024)  # handshakes, then never reads
        logs: list[dict[int, float]] = [{} for _ in range(n - 1)]
        readies = [asyncio.Event() for _ in range(n - 1)]
        tasks = []
        for i in range(n - 1):
            tasks.append(asyncio.create_task(_subscriber(server.url, logs[i], readies[i])))
            if i % 50 == 49:
                await asyncio.gather(*(r.wait() for r in readies[: i + 1]))
        await asyncio.gather(*(r.wait() for r in readies))
        assert server.subscriber_count == n

        sent: dict[int, float] = {}
        text = "这是一段比较长的字幕，用来尽快填满那个从不读取的客户端的缓冲区。" * 12  # ~1.2 KB
        stuck_gone_at = None
        for seq in range(events):
            sent[seq] = time.perf_counter()
            server.publish(ev(seq, text=text))
            await asyncio.sleep(0.05)
            if stuck_gone_at is None and server.subscriber_count == n - 1:
                stuck_gone_at = seq
        await asyncio.sleep(0.5)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

        for log in logs:
            assert sorted(log) == list(range(events))  # nobody missed a final
        p99 = [sorted(log[s] - sent[s] for log in logs)[int(0.99 * (n - 1))] for s in range(events)]
        early, late = statistics.median(p99[:8]), statistics.median(p99[-20:])
        print(
            f"\np99 per event: early {early * 1e3:.1f} ms, late {late * 1e3:.1f} ms, "
            f"max {max(p99) * 1e3:.1f} ms; stuck dropped at event {stuck_gone_at}"
        )
        # The stuck client filled its ~12 KB of buffers after ~10 events, then its queue of 16,
        # and was cut off for that (not by the keepalive, which would take 2 + 2 s).
        assert server.dropped == 1 and stuck_gone_at is not None and stuck_gone_at < 40
        # Loose bounds for a shared 2-core machine, yet far below what one blocked send costs.
        assert max(p99) < 0.5
        assert late < early + 0.1
        stuck.close()

    run(
        main,
        ping_interval=ping,
        ping_timeout=ping,
        close_timeout=0.5,
        send_buffer=4096,
        write_limit=2048,
        queue_size=16,
    )


def test_stuck_client_is_dropped_by_keepalive_within_ping_interval_plus_timeout() -> None:
    async def main(server: CaptionServer) -> None:
        stuck = await RawClient.connect(server.port)
        t0 = time.perf_counter()
        while server.subscriber_count:
            await asyncio.sleep(0.02)
        assert time.perf_counter() - t0 < 0.3 + 0.3 + 0.3  # interval + timeout + scheduling slack
        # ...and its TCP connection is cut after close_timeout, not left open.
        await stuck.read_until(lambda c: False, timeout=5)
        assert stuck.closed
        stuck.close()

    run(main, ping_interval=0.3, ping_timeout=0.3, close_timeout=0.3)


def test_pages_answer_get_and_head_only() -> None:
    async def main(server: CaptionServer) -> None:
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as session:
            for path in ("/healthz", "/overlay"):
                for method in ("POST", "PUT", "DELETE"):
                    async with session.request(method, base + path) as r:
                        assert r.status == 405 and "GET" in r.headers["Allow"], (method, path)
                async with session.head(base + path) as r:
                    assert r.status == 200 and int(r.headers["Content-Length"]) > 0
                    assert await r.read() == b""

    run(main)
