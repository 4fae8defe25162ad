"""The README's websocket examples, run as a user runs them: the code blocks as the README has
them (only the file name and the port replaced), each in a process of its own, against
``glmasr-live serve --model demo`` on the bundled 41 s recording, in real time.

41 s is the point: a client that does not read while it sends stops answering websockets'
keepalive pings once deltas fill its receive queue, and is cut off after 20-40 s."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import cer
from serverkit import ServeProcess

ROOT = Path(__file__).resolve().parents[1]
DEMO_WAV = ROOT / "assets" / "demo.wav"
DEMO_LINES = [
    line.strip() for line in (ROOT / "assets" / "demo.txt").read_text().splitlines() if line.strip()
]


def readme_example(endpoint: str) -> str:
    """The README's Python block that connects to ``endpoint``."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    found = [b for b in blocks if f"127.0.0.1:8765{endpoint}" in b]
    assert len(found) == 1, f"one README example for {endpoint}, found {len(found)}"
    return found[0]


def run_examples(srv: ServeProcess, *codes: str) -> list[subprocess.CompletedProcess[str]]:
    procs = []
    for code in codes:
        code = code.replace('"talk.wav"', repr(str(DEMO_WAV))).replace(
            "127.0.0.1:8765", f"127.0.0.1:{srv.port}"
        )
        procs.append(subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))  # fmt: skip
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=150)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return out


@pytest.mark.slow
def test_the_readme_ingest_and_realtime_examples_run_a_41_s_recording(tmp_path):
    from glmasr_live.pieces import join

    reference = join(DEMO_LINES)
    srv = ServeProcess(tmp_path, "--model", "demo", "--transcripts", str(tmp_path / "rooms")).started()
    try:
        ingest, realtime = run_examples(srv, readme_example("/v1/ingest"), readme_example("/v1/realtime"))
    finally:
        assert srv.stop() == 0
    assert ingest.returncode == 0, ingest.stderr
    assert realtime.returncode == 0, realtime.stderr
    # ingest: one line per final, "  start speaker: text"
    heard = [m.group(1) for m in re.finditer(r"^\s*[\d.]+ Bob: (.*)$", ingest.stdout, re.M)]
    assert cer(reference, join(heard)) <= 0.15, ingest.stdout
    # realtime: the deltas on one line, then a newline after transcription.done
    assert realtime.stdout.endswith("\n") and cer(reference, realtime.stdout.strip()) <= 0.15, realtime.stdout
    assert "Traceback" not in srv.stderr, srv.stderr
