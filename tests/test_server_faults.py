"""Faults a user met on a real server (demo model, loopback sockets, real files): a corrupt room
journal, a file that is not a journal at all, frames over the size limit, ``resume_at`` values
the server cannot place, and where a reconnect after a drop lands on the room's clock."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets
from conftest import cer
from serverkit import SR, RunningServer, ingest, pcm16
from websockets.exceptions import ConnectionClosed


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m.get("type") == "final"]


async def _closed_with(url: str, *frames: Any) -> tuple[int | None, str, list[dict[str, Any]]]:
    """Connect, send ``frames``, read to the end: the close code, its reason, what came."""
    got: list[dict[str, Any]] = []
    async with websockets.connect(url, max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):
            for f in frames:
                await ws.send(f)
            async for msg in ws:
                got.append(json.loads(msg))
    return ws.close_code, ws.close_reason, got


def _journal_lines(srv: RunningServer, speech: dict, tmp_path: Path) -> list[str]:
    """Lines of a journal as a real run writes it (two finals of room ``real``)."""
    audio = np.concatenate([speech["alice"][0], speech["bob"][0]])
    asyncio.run(ingest(srv.ws("/v1/ingest?room=real&name=Alice"), audio, pace=4.0))
    lines = (tmp_path / "real.jsonl").read_text().splitlines()
    assert len(lines) == 2, lines
    return lines


def test_a_corrupt_room_journal_is_one_log_line_and_a_close_reason(captioner, speech, tmp_path, caplog):
    with RunningServer(captioner, tmp_path) as srv:
        lines = _journal_lines(srv, speech, tmp_path)
        corrupt = tmp_path / "mid.jsonl"
        corrupt.write_text("\n".join([lines[0], lines[1], "garbage line", lines[1]]) + "\n")
        before = corrupt.read_bytes()
        caplog.set_level(logging.WARNING)
        caplog.clear()

        async def main() -> list[tuple[int | None, str, list]]:
            return [
                await _closed_with(srv.ws("/v1/ingest?room=mid&name=A")),
                await _closed_with(srv.ws("/v1/rooms/mid/captions")),
                await _closed_with(srv.ws("/v1/realtime?room=mid")),
            ]

        closes = asyncio.run(main())
        status, body = asyncio.run(_get(srv.http("/v1/rooms/mid/transcript.txt")))
        # Another room is not disturbed: a stream into it gets its final.
        got, close = asyncio.run(ingest(srv.ws("/v1/ingest?room=fine&name=Bob"), speech["bob"][0], pace=4.0))
    for code, reason, _ in closes:
        assert code == 1011 and "corrupt (journal line 3)" in reason and "mid.jsonl aside" in reason
        assert str(tmp_path) not in reason  # no server paths for clients
    assert status == 500 and "corrupt (journal line 3)" in body
    records = [r for r in caplog.records if "mid.jsonl" in r.getMessage()]
    assert len(records) == 4 and all(r.exc_info is None for r in records), records  # no tracebacks
    assert not [r for r in caplog.records if r.exc_info is not None]
    assert corrupt.read_bytes() == before, "a corrupt journal is never rewritten"
    assert close == (1000, "end of stream") and cer(speech["bob"][1], finals(got)[0]["text"]) <= 0.15


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status, await r.text()


@pytest.mark.parametrize("content", [b"garbage\n", b'{"a":1}\n', b'{"a":1}'])
def test_a_file_that_is_not_a_journal_is_refused_not_overwritten(captioner, speech, tmp_path, content):
    (tmp_path / "corrupt.jsonl").write_bytes(content)
    with RunningServer(captioner, tmp_path) as srv:
        code, reason, _ = asyncio.run(
            _closed_with(srv.ws("/v1/ingest?room=corrupt"), pcm16(speech["bob"][0]))
        )
    assert code == 1011 and "corrupt (journal line 1)" in reason, reason
    assert (tmp_path / "corrupt.jsonl").read_bytes() == content
    assert not (tmp_path / "corrupt.srt").exists()


def test_an_oversized_ingest_frame_still_sends_the_final_first(captioner, speech, tmp_path):
    audio, ref = speech["alice"]
    speech_part = audio[: int(2.0 * SR)]  # the utterance is still open when the big frame comes
    with RunningServer(captioner, tmp_path) as srv:

        async def main() -> tuple[int | None, str, list]:
            frames = [pcm16(speech_part[i : i + 1600]) for i in range(0, len(speech_part), 1600)]
            return await _closed_with(srv.ws("/v1/ingest?room=big&name=A"), *frames, b"\x00" * (2 << 20))

        code, reason, got = asyncio.run(main())
    assert (code, reason) == (1009, "frame over 1048576 bytes")
    fin = finals(got)
    assert len(fin) == 1 and fin[0]["text"], got
    journal = [json.loads(x) for x in (tmp_path / "big.jsonl").read_text().splitlines()]
    assert [j["text"] for j in journal] == [fin[0]["text"]]


def test_a_frame_too_large_to_hold_still_gets_a_close_reason(captioner, tmp_path):
    from glmasr_live.server.ingest import HARD_LIMIT_FACTOR

    with RunningServer(captioner, tmp_path, max_frame_bytes=4096) as srv:
        huge = b"\x00" * (4096 * HARD_LIMIT_FACTOR + 2)  # past the library's own limit too
        code, reason, _ = asyncio.run(_closed_with(srv.ws("/v1/ingest?room=huge"), huge))
    assert (code, reason) == (1009, "frame over 4096 bytes")


def test_an_oversized_realtime_message_gets_error_deltas_done_then_1009(captioner, tmp_path):
    import soundfile as sf

    demo, _ = sf.read(Path(__file__).resolve().parents[1] / "assets" / "demo.wav", dtype="float32")
    first = demo[: int(2.0 * SR)]
    with RunningServer(captioner, tmp_path) as srv:

        async def main() -> tuple[int | None, str, list]:
            events = [json.dumps({"type": "input_audio_buffer.commit"})]
            for i in range(0, len(first), 1600):
                chunk = base64.b64encode(pcm16(first[i : i + 1600])).decode()
                events.append(json.dumps({"type": "input_audio_buffer.append", "audio": chunk}))
            big = json.dumps({"type": "input_audio_buffer.append", "audio": "A" * 3_000_000})
            return await _closed_with(srv.ws("/v1/realtime?room=rt"), *events, big)

        code, reason, got = asyncio.run(main())
    assert (code, reason) == (1009, "message over 1048576 bytes")
    kinds = [m["type"] for m in got]
    assert kinds[0] == "session.created" and kinds[-1] == "transcription.done", kinds
    errors = [m for m in got if m["type"] == "error"]
    assert [e["code"] for e in errors] == ["invalid_event"]
    deltas = "".join(m["delta"] for m in got if m["type"] == "transcription.delta")
    assert got[-1]["text"] == deltas and deltas.startswith("hello"), got


def test_resume_at_the_server_cannot_place_is_refused(captioner, speech, tmp_path):
    audio, _ = speech["alice"]
    with RunningServer(captioner, tmp_path) as srv:

        async def main() -> list[tuple[int | None, str]]:
            out = []
            for value in ("1e300", "inf", "nan", "-1"):
                code, reason, _ = await _closed_with(srv.ws(f"/v1/ingest?room=r&name=Z&resume_at={value}"))
                out.append((code, reason))
            # A speaker this room heard 3.1 s from: a resume far past that is refused too.
            viewer = await websockets.connect(srv.ws("/v1/rooms/r/captions"))  # keeps the room open
            await ingest(srv.ws("/v1/ingest?room=r&name=Known"), audio, pace=4.0)
            code, reason, _ = await _closed_with(srv.ws("/v1/ingest?room=r&name=Known&resume_at=5000"))
            out.append((code, reason))
            ok = await _closed_with(
                srv.ws("/v1/ingest?room=r&name=Known&resume_at=2.5"), json.dumps({"type": "end"})
            )
            out.append(ok[:2])
            await viewer.close()
            return out

        out = asyncio.run(main())
    assert out[0] == (1008, "resume_at must be seconds from 0 to 2592000")
    for code, reason in out[1:4]:
        assert code == 1008 and "resume_at" in reason
    assert out[4][0] == 1008 and re.search(r"past the \d+\.\d\d s of audio received from Known", out[4][1])
    assert out[5] == (1000, "end of stream")


@pytest.mark.parametrize("viewer", [False, True], ids=["room-let-go", "room-kept-open"])
def test_a_reconnect_lands_at_resume_at_on_the_speakers_time_line(captioner, speech, tmp_path, viewer):
    """After a drop the client resends from its last ack; that audio must sit where it sat the
    first time (origin + resume_at), also when the drop let the room go (no viewer held it)."""
    audio, _ = speech["alice"]
    with RunningServer(captioner, tmp_path) as srv:

        async def main() -> tuple[float, float, float]:
            v = await websockets.connect(srv.ws("/v1/rooms/t/captions")) if viewer else None
            ws = await websockets.connect(srv.ws("/v1/ingest?room=t&name=A"))
            first = json.loads(await ws.recv())["offset"]
            acks: list[float] = []
            for i in range(0, len(audio), 1600):  # in real time, acks read as they come
                await ws.send(pcm16(audio[i : i + 1600]))
                with contextlib.suppress(TimeoutError):
                    while True:
                        m = json.loads(await asyncio.wait_for(ws.recv(), 0.1))
                        if m["type"] == "ack":
                            acks.append(m["audio"])
            ws.transport.abort()  # the network drops: no close frame, some audio past the last ack
            await asyncio.sleep(1.0)  # the server finishes the dropped stream (and may let the room go)
            again = await websockets.connect(srv.ws(f"/v1/ingest?room=t&name=A&resume_at={acks[-1]}"))
            second = json.loads(await again.recv())["offset"]
            await again.close()
            if v is not None:
                await v.close()
            return first, acks[-1], second

        first, last_ack, second = asyncio.run(main())
    assert second == pytest.approx(first + last_ack, abs=0.005), (first, last_ack, second)
