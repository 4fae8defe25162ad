"""``WS /v1/realtime`` (vLLM's realtime transcription protocol) with real clients on loopback:
the event flow vLLM's own clients use, deltas that add up to ``transcription.done``, errors for
bad events that leave other streams alone, limits, and shutdown."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import websockets
from serverkit import SR, RunningServer, ingest, pcm16
from websockets.exceptions import ConnectionClosed, InvalidStatus

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo.wav"
DEMO_TEXT = "hello please start one two three open blue please seven four nine zero two"


@pytest.fixture(scope="module")
def demo12():
    """The first three utterances of the bundled recording (12.4 s, cut in a pause)."""
    audio, rate = sf.read(DEMO, dtype="float32")
    assert rate == SR
    return audio[: int(12.4 * SR)]


def append(audio: np.ndarray) -> str:
    return json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm16(audio)).decode()})


COMMIT = json.dumps({"type": "input_audio_buffer.commit"})
FINAL = json.dumps({"type": "input_audio_buffer.commit", "final": True})


class Client:
    """A realtime client as vLLM's examples write one: JSON events, waits for what it needs."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.got: list[dict[str, Any]] = []

    async def send(self, *events: str) -> None:
        for e in events:
            await self.ws.send(e)

    async def until(self, kind: str, timeout: float = 30) -> dict[str, Any]:
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            self.got.append(msg)
            if msg["type"] == kind:
                return msg

    async def stream(self, audio: np.ndarray, block_s: float = 0.1) -> None:
        block = int(SR * block_s)
        for i in range(0, len(audio), block):
            await self.ws.send(append(audio[i : i + block]))

    async def rest(self) -> tuple[int | None, str | None]:
        """Every message until the server closes; the close code and reason."""
        with contextlib.suppress(ConnectionClosed):  # raised for codes other than 1000/1001
            async for raw in self.ws:
                self.got.append(json.loads(raw))
        return self.ws.close_code, self.ws.close_reason

    def deltas(self, since: int = 0) -> str:
        return "".join(m["delta"] for m in self.got[since:] if m["type"] == "transcription.delta")


async def transcribe(url: str, audio: np.ndarray) -> tuple[Client, dict[str, Any]]:
    """vLLM's flow: session.created, session.update, commit, appends, final commit, done."""
    async with websockets.connect(url) as ws:
        c = Client(ws)
        created = await c.until("session.created")
        await c.send(json.dumps({"type": "session.update", "model": "demo"}))
        assert (await c.until("session.updated"))["model"] == "demo"
        await c.send(COMMIT)
        await c.stream(audio)
        await c.send(FINAL)
        done = await c.until("transcription.done")
        assert created is c.got[0] and created["id"].startswith("sess-")
        return c, done


def test_vllm_client_gets_deltas_adding_up_to_done_and_the_ingest_text(captioner, demo12, tmp_path):
    with RunningServer(captioner, tmp_path) as srv:

        async def both():
            return await asyncio.gather(
                transcribe(srv.ws("/v1/realtime?room=r1&name=Ann"), demo12),
                ingest(srv.ws("/v1/ingest?room=r1&name=Ing"), demo12),
            )

        (client, done), (ingested, close) = asyncio.run(both())
    assert close == (1000, "end of stream")
    assert done["text"] == client.deltas() and done["usage"] is None
    ingest_text = " ".join(m["text"] for m in ingested if m["type"] == "final")
    assert done["text"] == ingest_text == DEMO_TEXT
    journal = [json.loads(line) for line in (tmp_path / "r1.jsonl").read_text().splitlines()]
    ann = [j["text"] for j in journal if j["speaker"] == "Ann"]
    assert " ".join(ann) == done["text"] and len(ann) == 3


def test_one_connection_runs_transcription_after_transcription(captioner, demo12, tmp_path):
    """vLLM's tests warm up with a short transcription, then run the real one on one socket."""
    second = demo12[int(5.0 * SR) : int(7.8 * SR)]  # "open blue please"

    async def client(url: str) -> tuple[Client, list[dict[str, Any]], Any]:
        async with websockets.connect(url) as ws:
            c = Client(ws)
            await c.until("session.created")
            await c.send(COMMIT, append(demo12[: SR // 10]), FINAL)
            dones = [await c.until("transcription.done")]
            mark = len(c.got)
            await c.send(COMMIT)
            await c.stream(second)
            await c.send(FINAL)
            dones.append(await c.until("transcription.done"))
            assert dones[1]["text"] == c.deltas(mark)
            await c.send(FINAL)  # nothing open: still answered
            dones.append(await c.until("transcription.done"))
            await ws.close()
            return c, dones, (ws.close_code, ws.close_reason)

    with RunningServer(captioner, tmp_path) as srv:
        _, dones, _ = asyncio.run(client(srv.ws("/v1/realtime?room=r2")))
    assert [d["text"] for d in dones] == ["", "open blue please", ""]


def test_bad_events_get_error_events_and_leave_another_stream_alone(captioner, demo12, tmp_path):
    bad = [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_event"),
        (json.dumps({"type": "response.create"}), "unknown_event"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "@@not base64@@"}), "invalid_audio"),
        (
            json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
            "invalid_audio",
        ),
        (json.dumps({"type": "input_audio_buffer.append", "audio": ""}), "invalid_audio"),
        (json.dumps({"type": "input_audio_buffer.append"}), "invalid_audio"),
        (json.dumps({"type": "input_audio_buffer.commit", "final": "yes"}), "invalid_event"),
        (json.dumps({"type": "session.update", "model": "nonexistent-model"}), "model_not_found"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),
    ]

    async def rogue(url: str) -> tuple[Client, list[dict[str, Any]], Any]:
        async with websockets.connect(url) as ws:
            c = Client(ws)
            await c.until("session.created")
            errors = []
            for event, _ in bad:
                await c.send(event)
                errors.append(await c.until("error"))
            await c.send(append(demo12[: SR // 2]), json.dumps({"type": "session.update"}))
            await c.until("session.updated")  # still served after all that
            await ws.send(b"\x00\x01" * 800)  # binary: not this protocol
            return c, errors, await c.rest()

    with RunningServer(captioner, tmp_path) as srv:

        async def both():
            return await asyncio.gather(
                transcribe(srv.ws("/v1/realtime?room=r3&name=Good"), demo12),
                rogue(srv.ws("/v1/realtime?room=r3&name=Rogue")),
            )

        (good, done), (c, errors, close) = asyncio.run(both())
    assert [e["code"] for e in errors] == [code for _, code in bad]
    assert "nonexistent-model" in errors[8]["error"] and "3-byte" in errors[4]["error"]
    assert done["text"] == DEMO_TEXT == good.deltas()
    assert close[0] == 1003 and "base64" in close[1]
    tail = [m["type"] for m in c.got[-2:]]
    assert tail == ["error", "transcription.done"], c.got[-3:]


def test_shutdown_finishes_the_open_utterance_sends_done_then_closes_1001(captioner, demo12, tmp_path):
    part = demo12[: int(6.7 * SR)]  # the second utterance is still being spoken

    with RunningServer(captioner, tmp_path) as srv:

        async def client() -> tuple[Client, Any]:
            async with websockets.connect(srv.ws("/v1/realtime?room=r4&name=Sam")) as ws:
                c = Client(ws)
                await c.until("session.created")
                await c.send(COMMIT)
                await c.stream(part)
                # Events are handled in order: once this is answered, all audio was fed.
                await c.send(json.dumps({"type": "session.update"}))
                await c.until("session.updated")
                stopping = asyncio.create_task(asyncio.to_thread(srv.stop))
                close = await c.rest()
                await stopping
                return c, close

        c, close = asyncio.run(client())
    assert close == (1001, "server shutting down")
    done = c.got[-1]
    assert done["type"] == "transcription.done" and done["text"] == c.deltas()
    assert done["text"].startswith("hello please start one two three open")
    journal = [json.loads(line) for line in (tmp_path / "r4.jsonl").read_text().splitlines()]
    assert " ".join(j["text"] for j in journal) == done["text"]


def test_limits_tokens_idle_and_pace(captioner, tmp_path):
    settings = dict(publish_token="pub-token", max_streams=1, idle_s=1.0, max_speed=1.0, burst_s=1.0,
                    max_frame_bytes=64 << 10)  # fmt: skip
    noise = (np.random.default_rng(0).standard_normal(3 * SR) * 0.01).astype(np.float32)

    async def run(srv: RunningServer) -> dict[str, Any]:
        url = srv.ws("/v1/realtime?token=pub-token")
        out: dict[str, Any] = {}
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(srv.ws("/v1/realtime"))
        out["no token"] = refused.value.response.status_code
        async with websockets.connect(srv.ws("/v1/realtime?token=pub-token&room=no%20spaces")) as ws:
            out["bad room"] = await Client(ws).rest()
        async with websockets.connect(url) as first:
            a = Client(first)
            await a.until("session.created")
            async with websockets.connect(url) as second:
                out["full"] = await Client(second).rest()
            out["idle"] = await a.rest(), a.got[-1]
        async with websockets.connect(url) as ws:
            c = Client(ws)
            await c.until("session.created")
            with contextlib.suppress(ConnectionClosed):  # 3 s at once: past the 1 s burst at 1x
                await c.stream(noise, block_s=1.0)
            out["fast"] = await c.rest(), [m.get("code") for m in c.got if m["type"] == "error"]
        async with websockets.connect(url) as ws:
            c = Client(ws)
            await c.until("session.created")
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (80 << 10)}))
            out["big"] = await c.rest()
        return out

    with RunningServer(captioner, tmp_path, **settings) as srv:
        out = asyncio.run(run(srv))
    assert out["no token"] == 403
    assert out["bad room"][0] == 1008 and "room" in out["bad room"][1]
    assert out["full"][0] == 1013 and "full" in out["full"][1]
    assert out["idle"][0] == (1000, "idle: no events for 1 s")
    assert out["idle"][1] == {"type": "transcription.done", "text": "", "usage": None}
    assert out["fast"][0][0] == 1008 and "real time" in out["fast"][0][1] and out["fast"][1] == ["too_fast"]
    assert out["big"][0] == 1009


def test_deltas_carry_committed_text_only_and_join_utterances_the_way_they_read():
    from glmasr_live.events import CaptionEvent
    from glmasr_live.server.realtime import Transcript

    def ev(kind: str, utt: int, committed: str, tentative: str = "") -> CaptionEvent:
        text = committed if kind == "final" else f"{committed} {tentative}".strip()
        return CaptionEvent(kind, 0, utt, 0.0, 1.0, committed, tentative, text, 1.0, 0.0)  # type: ignore[arg-type]

    t = Transcript()
    steps = [
        (ev("partial", 0, "", "hello"), ""),
        (ev("partial", 0, "hello ", "plea"), "hello"),
        (ev("partial", 0, "hello", "please"), ""),
        (ev("final", 0, "hello please"), " please"),
        (ev("status", -1, ""), ""),
        (ev("partial", 1, "open", "blue"), " open"),
        (ev("final", 1, "close blue"), ""),  # a final that does not extend what was sent: kept as sent
        (ev("final", 2, "三五七九"), "三五七九"),  # no space next to CJK (join_text)
        (ev("final", 3, "一二八六"), "一二八六"),
    ]
    assert [t.delta(e) for e, _ in steps] == [d for _, d in steps]
    assert t.text == "hello please open三五七九一二八六"


def test_a_commit_mid_stream_ends_the_open_utterance_push_to_talk(captioner, demo12, tmp_path):
    """A non-final commit after audio ends the utterance at once (no pause needed after it)."""
    first = demo12[: int(4.2 * SR)]  # "hello please start one two three", no trailing pause

    async def main(srv: RunningServer) -> tuple[str, str]:
        async with websockets.connect(srv.ws("/v1/realtime")) as ws:
            c = Client(ws)
            await c.until("session.created")
            await c.send(COMMIT)
            await c.stream(first)
            await c.send(COMMIT)  # push-to-talk released
            while "three" not in c.deltas():
                await c.until("transcription.delta")
            cut = c.deltas()
            await c.stream(demo12[len(first) :])
            await c.send(FINAL)
            done = await c.until("transcription.done")
            return cut, done["text"]

    with RunningServer(captioner, tmp_path) as srv:
        cut, text = asyncio.run(main(srv))
    assert cut == "hello please start one two three"
    assert text == DEMO_TEXT
