"""The whole live pipeline with real parts: demo model, real-time file input, websocket, files."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import websockets
from conftest import DEMO_MODEL, cer

from glmasr_live.config import PipelineSettings
from glmasr_live.events import CaptionEvent
from glmasr_live.pipeline import LivePipeline

pytestmark = pytest.mark.skipif(
    not (DEMO_MODEL / "config.json").exists(), reason="demo model not trained yet"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WsCollector:
    """A real websocket subscriber on its own thread; keeps every message."""

    def __init__(self, url: str):
        self.url = url
        self.messages: list[dict] = []
        self.close_code: int | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                ws = await websockets.connect(self.url)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.closed.set()
                    return
                await asyncio.sleep(0.1)  # the server is still loading the model
        self.connected.set()
        try:
            async for raw in ws:
                self.messages.append(json.loads(raw))
        except websockets.ConnectionClosed:
            pass
        self.close_code = ws.close_code
        self.closed.set()

    def events(self) -> list[CaptionEvent]:
        return [
            CaptionEvent.from_dict(m)
            for m in self.messages
            if m.get("type") in ("partial", "final", "status")
        ]


def _journal(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_realtime_file_through_cli_websocket_stdout_transcript_agree(three_utterances, tmp_path):
    path, refs, _ = three_utterances
    port = free_port()
    journal, srt = tmp_path / "live.jsonl", tmp_path / "live.srt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "glmasr_live", "--input", str(path), "--realtime", "--model", "demo", "--no-tui",
         "--ws", f"127.0.0.1:{port}", "--transcript", str(journal), "--transcript", str(srt)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    client = WsCollector(f"ws://127.0.0.1:{port}/")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    assert client.closed.wait(10)
    assert client.close_code == 1001
    events = client.events()
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == 3, (out, err)
    # partials before the final of each utterance, sequence numbers strictly increasing
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for f in finals:
        before = [e for e in events if e.utterance == f.utterance and e.seq < f.seq]
        assert before and all(e.type == "partial" for e in before)
        assert not [e for e in events if e.utterance == f.utterance and e.seq > f.seq]
    for f, ref in zip(finals, refs, strict=True):
        assert cer(ref, f.text) <= 0.15, (ref, f.text)
    # websocket, stdout and the journal carry exactly the same finals
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if line.startswith("[")]
    assert lines == [f.text for f in finals]
    assert [j["text"] for j in _journal(journal)] == [f.text for f in finals]
    assert [j["seq"] for j in _journal(journal)] == [f.seq for f in finals]
    assert srt.read_text(encoding="utf-8").count("-->") == 3


def test_sigterm_mid_utterance_loses_nothing(three_utterances, tmp_path):
    path, refs, _ = three_utterances
    port = free_port()
    journal = tmp_path / "t.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "glmasr_live", "--input", str(path), "--realtime", "--model", "demo", "--no-tui",
         "--ws", f"127.0.0.1:{port}", "--transcript", str(journal)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    client = WsCollector(f"ws://127.0.0.1:{port}/")
    deadline = time.monotonic() + 120
    # wait until utterance 1 is being captioned (its first partial), then SIGTERM
    while not any(m.get("type") == "partial" and m.get("utterance") == 1 for m in client.messages):
        assert time.monotonic() < deadline and proc.poll() is None
        client.closed.wait(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert time.monotonic() - t0 < 5.0
    finals = _journal(journal)
    assert [f["utterance"] for f in finals] == [0, 1]
    assert cer(refs[0], finals[0]["text"]) <= 0.15
    assert finals[1]["text"]  # the interrupted utterance still got its final
    assert client.closed.wait(5) and client.close_code == 1001


def test_worker_exception_reported_and_next_utterance_captioned(three_utterances):
    path, refs, _ = three_utterances
    live = LivePipeline(PipelineSettings(input=str(path), realtime=False, model="demo", ws=None))
    events = live.events()
    live.start()
    dec = live.stream.decoder
    real_plan = dec.plan
    calls = {"n": 0}

    def failing_plan(final, **kwargs):
        if final:
            calls["n"] += 1
            if calls["n"] == 1:  # the first final step fails once; the scheduler reports and retries
                raise RuntimeError("injected fault")
        return real_plan(final, **kwargs)

    dec.plan = failing_plan
    got = list(events)
    live.stop()
    status = [e for e in got if e.type == "status" and e.status == "worker_error"]
    assert status and "injected fault" in (status[0].message or "")
    finals = [e for e in got if e.type == "final"]
    assert [f.utterance for f in finals] == [0, 1, 2]
    for f, ref in zip(finals, refs, strict=True):
        assert cer(ref, f.text) <= 0.15


def test_slow_model_skips_partials_never_finals_latency_bounded(three_utterances):
    """A model slower than the partial interval (each step made to take 1 s, twice the 0.5 s
    interval) on a real-time stream: partials are skipped with a status event, every utterance
    still gets its final, and caption latency stays bounded instead of drifting."""
    path, refs, _ = three_utterances
    live = LivePipeline(PipelineSettings(input=str(path), realtime=True, model="demo", ws=None))
    events = live.events()
    live.start()
    dec = live.stream.decoder
    real_plan = dec.plan
    slow = threading.Event()

    def slow_plan(final, **kwargs):
        if not final:
            slow.wait(1.0)  # emulates a slow device: the partial step itself takes 1 s
        return real_plan(final, **kwargs)

    dec.plan = slow_plan
    got = list(events)
    live.stop()
    finals = [e for e in got if e.type == "final"]
    assert [f.utterance for f in finals] == [0, 1, 2]
    assert live.stream.policy.stats.shed_partials > 0
    assert any(e.type == "status" and e.status == "behind" for e in got)
    partials = [e for e in got if e.type == "partial"]
    lags = [e.audio_clock - e.end for e in partials]
    assert partials and max(lags) < 2.5, lags  # step (1 s) + interval (0.5 s) + margin
