"""The prepared GPU check runs end to end (here on the CPU with a tiny model: the same code)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_script_prints_the_table_and_writes_json(tmp_path):
    out = tmp_path / "gc.json"
    cmd = [sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--model", "tiny", "--device", "cpu",
           "--dtype", "float32", "--repeats", "1", "--json", str(out)]  # fmt: skip
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "encoder, one padded window" in r.stdout and "padding none" in r.stdout
    data = json.loads(out.read_text())
    assert set(data["encoder_ms"]) == {"padded_window", "true_1s", "true_3s", "true_6s", "true_15s"}
    assert set(data["prefill_ms_per_100_tokens"]) == {"100", "400", "1500"}
    assert data["decode_ms_per_token"] > 0 and data["meta"]["parameters"] > 0
    for padding in ("full", "none"):
        assert 0 < data["streaming_step_ms"][padding]["mean"] < 10_000
