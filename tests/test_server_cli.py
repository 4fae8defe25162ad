"""``glmasr-live serve`` as a user runs it: a real process, SIGTERM finishing open utterances."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import websockets
from serverkit import SR, pcm16
from websockets.exceptions import ConnectionClosed


def _start(tmp_path, *extra: str) -> tuple[subprocess.Popen, int, list[str]]:
    cmd = [sys.executable, "-m", "glmasr_live", "serve", "--model", "demo", "--ws", "127.0.0.1:0",
           "--transcripts", str(tmp_path / "rooms"), *extra]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    lines: list[str] = []
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
        if m:
            while "audio in:" not in lines[-1]:  # the announcement's last line
                lines.append(proc.stderr.readline())
            return proc, int(m.group(1)), lines
    proc.kill()
    raise AssertionError("serve did not start: " + "".join(lines))


@pytest.fixture(scope="module")
def utterance():
    from glmasr_live.devtools import synth

    rng = np.random.default_rng(3)
    u = synth.word_utterance("hello seven three nine start".split(), synth.Voice("en-us", "f4", 150, 60), rng,
                             gap_s=(0.05, 0.15), long_pause_p=0.0)  # fmt: skip
    return np.concatenate([np.zeros(SR // 2, np.float32), synth.set_level(u.audio, -24)])  # no pause after


def test_sigterm_finishes_open_utterances_and_closes_clients_with_1001(tmp_path, utterance):
    proc, port, lines = _start(tmp_path)
    text = "".join(lines)
    assert "/mic?room=default&name=Alice" in text and "/overlay?room=default" in text

    async def main() -> tuple[list, int | None, int | None]:
        speaker = await websockets.connect(f"ws://127.0.0.1:{port}/v1/ingest?room=meet&name=Alice")
        viewer = await websockets.connect(f"ws://127.0.0.1:{port}/v1/rooms/meet/captions")
        got = [json.loads(await speaker.recv())]
        for i in range(0, len(utterance), 1600):
            await speaker.send(pcm16(utterance[i : i + 1600]))
        while not (got[-1].get("type") == "ack" and got[-1]["audio"] >= len(utterance) / SR - 0.2):
            got.append(json.loads(await speaker.recv()))
        proc.send_signal(signal.SIGTERM)  # mid-utterance: no pause after the last word yet
        with contextlib.suppress(ConnectionClosed):
            async for m in speaker:
                got.append(json.loads(m))
        with contextlib.suppress(ConnectionClosed):
            async for _ in viewer:
                pass
        return got, speaker.close_code, viewer.close_code

    with proc:  # closes the stderr pipe on the way out
        try:
            got, speaker_code, viewer_code = asyncio.run(main())
            assert proc.wait(60) == 0
        finally:
            proc.kill()
    finals = [m for m in got if m.get("type") == "final"]
    assert len(finals) == 1 and "hello" in finals[0]["text"], got
    assert speaker_code == 1001 and viewer_code == 1001
    journal = (tmp_path / "rooms" / "meet.jsonl").read_text().splitlines()
    assert [json.loads(line)["text"] for line in journal] == [finals[0]["text"]]
    assert "Alice: " in (tmp_path / "rooms" / "meet.srt").read_text()


def test_bad_flags_are_one_error_line(tmp_path):
    for args, words in [(["--max-streams", "0"], "--max-streams 0"), (["--ws", "nohost"], "HOST:PORT"),
                        (["--keyfile", "k.pem"], "--keyfile needs --certfile")]:  # fmt: skip
        r = subprocess.run([sys.executable, "-m", "glmasr_live", "serve", "--model", "demo", *args],
                           capture_output=True, text=True, timeout=60, cwd=tmp_path)  # fmt: skip
        assert r.returncode == 2 and words in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def test_exposed_server_generates_tokens_and_prints_them(tmp_path):
    proc, port, lines = _start(tmp_path, "--ws", "0.0.0.0:0")
    with proc:  # closes the stderr pipe on the way out
        try:
            text = "".join(lines)
            m = re.search(r"generated tokens: publish=(\S+) view=(\S+)", text)
            assert m and m.group(1) != m.group(2), text
            assert f"token={m.group(1)}" in text  # the microphone page's link carries the publish token
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
