"""``glmasr-live serve`` with real clients on loopback: ingest, rooms and their transcripts,
bad input, limits, tokens, faults. (Realtime, file transcription, browser pages and SIGTERM
through the CLI have files of their own.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import numpy as np
import websockets
from conftest import cer
from serverkit import SR, RunningServer, ingest, pcm16
from websockets.exceptions import ConnectionClosed, InvalidStatus

SCHEMA = Path(__file__).resolve().parents[1] / "assets" / "caption-event.schema.json"


def finals(messages):
    return [m for m in messages if m.get("type") == "final"]


def test_ingest_sends_events_and_journals_finals_with_speaker(captioner, speech, tmp_path):
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    audio, ref = speech["alice"]
    with RunningServer(captioner, tmp_path) as srv:
        got, close = asyncio.run(ingest(srv.ws("/v1/ingest?room=r1&name=Alice"), audio))
    assert close == (1000, "end of stream")
    hello = got[0]
    assert (
        hello["type"] == "hello" and hello["v"] == 2 and hello["room"] == "r1" and hello["speaker"] == "Alice"
    )
    for m in got:
        jsonschema.validate(m, schema)
    fin = finals(got)
    assert len(fin) == 1 and cer(ref, fin[0]["text"]) <= 0.15, fin
    assert fin[0]["speaker"] == "Alice" and fin[0]["room"] == "r1" and fin[0]["stream"] == hello["stream"]
    acks = [m["audio"] for m in got if m["type"] == "ack"]
    assert acks == sorted(acks) and acks[-1] >= len(audio) / SR - 0.3
    journal = [json.loads(line) for line in (tmp_path / "r1.jsonl").read_text().splitlines()]
    assert [j["text"] for j in journal] == [fin[0]["text"]]
    assert (tmp_path / "r1.txt").read_text() == f"Alice: {fin[0]['text']}\n"
    assert f"<v Alice>{fin[0]['text']}" in (tmp_path / "r1.vtt").read_text()


def test_any_rate_and_channels_are_resampled(captioner, speech, tmp_path):
    import soxr

    audio, ref = speech["bob"]
    stereo48 = np.repeat(soxr.resample(audio, SR, 48000)[:, None], 2, axis=1).astype(np.float32)

    def f32(block: np.ndarray) -> bytes:
        return block.astype("<f4").tobytes()

    with RunningServer(captioner, tmp_path) as srv:
        url = srv.ws("/v1/ingest?encoding=f32le&sample_rate=48000&channels=2&name=Bob")
        got, close = asyncio.run(ingest(url, stereo48.reshape(-1), block_s=0.1 * 2 * 3, encode=f32))
    fin = finals(got)
    assert close[0] == 1000 and len(fin) == 1 and cer(ref, fin[0]["text"]) <= 0.15, fin
    assert fin[0]["room"] == "default"


def test_room_feed_merges_speakers_and_replays_finals_to_late_joiners(captioner, speech, tmp_path):
    async def main(srv: RunningServer) -> tuple[list, list]:
        async with websockets.connect(srv.ws("/v1/rooms/meet/captions")) as viewer:
            hello = json.loads(await viewer.recv())
            assert hello["type"] == "hello" and hello["finals"] == []
            await asyncio.gather(
                ingest(srv.ws("/v1/ingest?room=meet&name=Alice"), speech["alice"][0]),
                ingest(srv.ws("/v1/ingest?room=meet&name=Bob"), speech["bob"][0]),
            )
            seen = []
            while len(finals(seen)) < 2:
                seen.append(json.loads(await asyncio.wait_for(viewer.recv(), 30)))
        async with websockets.connect(srv.ws("/v1/rooms/meet/captions")) as late:
            late_hello = json.loads(await late.recv())
        return seen, late_hello["finals"]

    with RunningServer(captioner, tmp_path) as srv:
        seen, replayed = asyncio.run(main(srv))
    by_speaker = {m["speaker"]: m for m in finals(seen)}
    assert set(by_speaker) == {"Alice", "Bob"}
    for name, key in (("Alice", "alice"), ("Bob", "bob")):
        assert cer(speech[key][1], by_speaker[name]["text"]) <= 0.15
    seqs = [m["seq"] for m in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "the room numbers its events"
    assert [f["seq"] for f in replayed] == [m["seq"] for m in finals(seen)]
    srt = (tmp_path / "meet.srt").read_text()
    assert "Alice: " in srt and "Bob: " in srt


def _closes_with(srv: RunningServer, query: str, frames: list, expect: int) -> str:
    async def main() -> str:
        async with websockets.connect(srv.ws(f"/v1/ingest?{query}"), max_size=None) as ws:
            with contextlib.suppress(ConnectionClosed):
                for f in frames:
                    await ws.send(f)
                async for _ in ws:
                    pass
            assert ws.close_code == expect, (ws.close_code, ws.close_reason)
            return ws.close_reason

    return asyncio.run(main())


def test_bad_input_gets_a_close_reason_and_leaves_other_streams_alone(captioner, speech, tmp_path):
    audio, ref = speech["alice"]
    nan = np.full(160, np.nan, "<f4").tobytes()
    bad = [
        ("room=x", [b"\x00\x01\x02"], 1007, "not whole s16le samples"),
        ("room=x&encoding=f32le", [nan], 1007, "NaN"),
        ("room=x&encoding=f32le", [np.full(160, 1e6, "<f4").tobytes()], 1007, "really f32le"),
        ("room=x", ['{"audio": [1, 2, 3]}'], 1003, "expected binary PCM"),
        ("room=x&encoding=mp3", [], 1008, "encoding"),
        ("room=x&sample_rate=abc", [], 1008, "sample_rate"),
        ("room=../etc", [], 1008, "room must be"),
        ("room=x", [b"\x00" * (2 << 20)], 1009, "frame over 1048576 bytes"),
    ]
    with RunningServer(captioner, tmp_path) as srv:

        async def good() -> list:
            got, _ = await ingest(srv.ws("/v1/ingest?room=good&name=Alice"), audio, pace=4.0)
            return got

        async def main() -> list:
            task = asyncio.create_task(good())
            for query, frames, code, words in bad:
                reason = await asyncio.to_thread(_closes_with, srv, query, frames, code)
                assert words in reason, (query, reason)
            return await task

        got = asyncio.run(main())
    fin = finals(got)
    assert len(fin) == 1 and cer(ref, fin[0]["text"]) <= 0.15
    assert not [m for m in got if m.get("type") == "status"]


def test_a_stream_cut_mid_utterance_still_gets_its_final_into_the_room(captioner, speech, tmp_path):
    audio, _ = speech["alice"]
    cut = audio[: int(len(audio) * 0.6)]  # mid-speech

    async def main(srv: RunningServer) -> None:
        ws = await websockets.connect(srv.ws("/v1/ingest?room=cut&name=Alice"))
        for i in range(0, len(cut), 1600):
            await ws.send(pcm16(cut[i : i + 1600]))
        await ws.recv()  # hello: the stream is open
        ws.transport.abort()  # the network drops: no close frame

    with RunningServer(captioner, tmp_path) as srv:
        asyncio.run(main(srv))
        journal = tmp_path / "cut.jsonl"
        deadline = asyncio.run(_wait_for(lambda: journal.exists() and journal.read_text().strip(), 30))
        assert deadline, "the final of a dropped stream must reach the room's journal"
    line = json.loads(journal.read_text().splitlines()[0])
    assert line["speaker"] == "Alice" and "hello" in line["text"]


async def _drain(ws) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def _wait_for(cond, timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while loop.time() < end:
        if cond():
            return True
        await asyncio.sleep(0.05)
    return False


def test_limits_full_server_too_fast_and_idle(captioner, speech, tmp_path):
    audio, _ = speech["bob"]
    with RunningServer(captioner, tmp_path, max_streams=1, burst_s=1.0, idle_s=0.5) as srv:

        async def main() -> None:
            async with websockets.connect(srv.ws("/v1/ingest?room=a")) as first:
                await first.recv()
                async with websockets.connect(srv.ws("/v1/ingest?room=b")) as second:
                    await _drain(second)
                    assert second.close_code == 1013 and "server full" in second.close_reason
                await first.send(json.dumps({"type": "end"}))
            async with websockets.connect(srv.ws("/v1/ingest?room=a")) as fast:
                for i in range(0, len(audio), 1600):  # ~2.6 s of audio at once: > 2x real time
                    await fast.send(pcm16(audio[i : i + 1600]))
                await _drain(fast)
                assert fast.close_code == 1008 and "faster than 2x" in fast.close_reason
            async with websockets.connect(srv.ws("/v1/ingest?room=a")) as idle:
                await _drain(idle)
                assert idle.close_code == 1000 and "idle" in idle.close_reason

        asyncio.run(main())


def test_a_full_room_refuses_while_other_rooms_accept(captioner, tmp_path):
    with RunningServer(captioner, tmp_path, max_streams_per_room=1) as srv:

        async def main() -> None:
            async with websockets.connect(srv.ws("/v1/ingest?room=a")) as first:
                await first.recv()
                async with websockets.connect(srv.ws("/v1/ingest?room=a")) as second:
                    await _drain(second)
                    assert second.close_code == 1013 and "room full" in second.close_reason
                async with websockets.connect(srv.ws("/v1/ingest?room=b")) as other:
                    assert json.loads(await other.recv())["type"] == "hello"

        asyncio.run(main())


def test_hostile_origins_cannot_read_a_loopback_server(captioner, tmp_path):
    """No token on loopback, so the Origin is what keeps other sites' pages out."""
    with RunningServer(captioner, tmp_path) as srv:
        port = srv.port

        async def code(origin: str) -> int:
            try:
                async with websockets.connect(
                    srv.ws("/v1/rooms/meet/captions"), additional_headers={"Origin": origin}
                ):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        async def main() -> None:
            for hostile in (f"http://203.0.113.5:{port}", f"http://evil.example:{port}", "null",
                            f"http://127.0.0.1.evil.example:{port}", f"http://127.0.0.1:{port + 1}", "file://"):  # fmt: skip
                assert await code(hostile) == 403, hostile
            for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}"):
                assert await code(own) == 101, own

        asyncio.run(main())


def test_tokens_origin_and_host_off_loopback(captioner, tmp_path):
    with RunningServer(
        captioner, tmp_path, host="0.0.0.0", publish_token="pub-secret", view_token="view-secret"
    ) as srv:

        async def status(path: str, headers: dict | None = None) -> int:
            async with aiohttp.ClientSession() as http, http.get(srv.http(path), headers=headers or {}) as r:
                return r.status

        async def ws_refused(path: str, **kw) -> int:
            try:
                async with websockets.connect(srv.ws(path), **kw):
                    return 101
            except InvalidStatus as exc:
                return exc.response.status_code

        async def main() -> None:
            assert await ws_refused("/v1/ingest") == 403
            assert await ws_refused("/v1/ingest?token=view-secret") == 403, "a view token may not publish"
            assert await ws_refused("/v1/ingest?token=wrong") == 403
            assert await ws_refused("/v1/ingest?token=pub-secret") == 101
            assert await ws_refused("/v1/rooms/meet/captions?token=view-secret") == 101
            assert await ws_refused("/v1/rooms/meet/captions?token=pub-secret") == 101
            # A room that exists and one that does not look the same to someone who may not read.
            assert await ws_refused("/v1/rooms/meet/captions") == 403
            assert await ws_refused("/v1/rooms/nosuchroom/captions") == 403
            assert await status("/v1/rooms/meet/transcript.srt") == 403
            assert await status("/v1/rooms/meet/transcript.srt?token=view-secret") == 200
            assert await ws_refused(
                "/v1/ingest?token=pub-secret", additional_headers={"Origin": "http://evil.example"}
            ) == 403  # fmt: skip
            assert await status("/healthz", {"Host": "evil.example"}) == 403
            async with aiohttp.ClientSession() as http, http.get(srv.http("/healthz")) as r:
                body = await r.text()
            assert "meet" not in body

        asyncio.run(main())


def test_a_failing_step_is_a_status_event_on_that_stream_only(captioner, speech, tmp_path):
    audio, ref = speech["alice"]

    async def main(srv: RunningServer) -> tuple[list, list]:
        async with websockets.connect(srv.ws("/v1/ingest?room=f&name=Broken")) as broken:
            hello = json.loads(await broken.recv())
            session = next(s for s in srv.ctx.sessions if s.id == hello["stream"])
            handle = session.stream._handle

            def explode(*a, **k):
                raise RuntimeError("injected fault in this stream's decoder")

            # The stream's own decoder (made before its first step) fails every step.
            decoder = handle.scheduler.make_decoder()
            decoder.plan = explode
            handle.decoder = decoder
            ok = asyncio.create_task(ingest(srv.ws("/v1/ingest?room=f&name=Fine"), audio, pace=4.0))
            got = []
            for i in range(0, len(audio), 1600):
                await broken.send(pcm16(audio[i : i + 1600]))
                await asyncio.sleep(0.025)
            await broken.send(json.dumps({"type": "end"}))
            async for m in broken:
                got.append(json.loads(m))
            fine, _ = await ok
            return got, fine

    with RunningServer(captioner, tmp_path) as srv:
        broken, fine = asyncio.run(main(srv))
    assert any(m.get("status") == "worker_error" for m in broken), broken
    assert not [m for m in fine if m.get("type") == "status"]
    fin = finals(fine)
    assert len(fin) == 1 and cer(ref, fin[0]["text"]) <= 0.15


def test_a_full_disk_still_sends_the_final_and_says_the_transcript_failed(captioner, speech, full_disk):
    audio, ref = speech["bob"]
    with RunningServer(captioner, full_disk) as srv:
        got, close = asyncio.run(ingest(srv.ws("/v1/ingest?room=disk&name=Bob"), audio))
    fin = finals(got)
    assert len(fin) == 1 and cer(ref, fin[0]["text"]) <= 0.15
    errors = [m for m in got if m.get("status") == "transcript_error"]
    assert errors and "No space left" in errors[0]["message"], got
    assert close[0] == 1000
