"""``glmasr-live bench-streams --network``: the in-process streams again, through a real server
(websocket speakers and viewers), with the network / in-process ratios of the same run."""

from __future__ import annotations

import json
import subprocess
import sys

SR = 16000


def test_network_bench_prints_both_tables_and_writes_both_rows(tmp_path):
    out = tmp_path / "net.json"
    # Two speakers in one room: the second stream's room offset is estimated from the hellos.
    cmd = [
        sys.executable, "-m", "glmasr_live", "bench-streams", "--network", "--streams", "2",
        "--seconds", "4", "--streams-per-room", "2", "--json", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "largest N held" in proc.stdout and "network" in proc.stdout
    assert "final p95 in" in proc.stdout and "viewer fin p95" in proc.stdout  # the side-by-side table
    data = json.loads(out.read_text())
    rows = {r["scheduling"]: r for r in data["results"]}
    assert set(rows) == {"batched", "network"}  # --network compares with batched only by default
    local, net = rows["batched"], rows["network"]
    for r in (local, net):
        assert r["streams"] == 2 and r["finals"] >= 2 and r["finals"] == r["phrases"]
        assert r["final_p95"] > 0 and r["shown_p95"] > 0 and r["compute_per_audio_s"] > 0
    assert net["finals"] == local["finals"], "a final was lost on the way through the server"
    e = net["extra"]
    assert e["rooms"] == 1 and e["viewers"] == 2 and e["streams_per_room"] == 2
    assert e["viewer_finals_lost"] == 0 and e["viewer_final_p95"] > 0 and e["viewer_delay_ms_p95"] is not None
    assert e["close_codes"] == [1000] and e["acks"] > 0
    assert e["bytes_sent"] >= 2 * 2 * 4 * SR  # two 4 s recordings of s16le, at least
    assert e["frames_sent"] >= 2 * 4 / 0.03 * 0.9  # 30 ms frames in real time (a late wake merges some)
    assert e["client_cpu_per_audio_s"] > 0 and e["server_loop_cpu_per_audio_s"] > 0
    vs = e["vs_in_process"]
    assert vs["finals_equal"] and vs["final_p95"] > 0 and vs["shown_p95"] > 0
    assert data["meta"]["network"]["ratios"][0]["streams"] == 2
    assert data["meta"]["largest_n_held"].keys() == {"batched", "network"}


def test_network_bench_refuses_bad_room_and_viewer_counts(capsys):
    from glmasr_live.cli import main

    assert main(["bench-streams", "--network", "--viewers", "-1"]) != 0
    assert "--viewers -1" in capsys.readouterr().err
    assert main(["bench-streams", "--network", "--streams-per-room", "0"]) != 0
    assert "--streams-per-room 0" in capsys.readouterr().err


def test_bus_bench_measures_one_replica_and_the_other_replica_in_one_run(tmp_path):
    import shutil

    import pytest

    pytest.importorskip("redis")
    if shutil.which("redis-server") is None:
        pytest.skip("needs redis-server (apt-get install redis-server)")
    out = tmp_path / "bus.json"
    # --bus local starts a private redis-server; --bus implies --network (the one-replica rows).
    cmd = [sys.executable, "-m", "glmasr_live", "bench-streams", "--bus", "local", "--streams", "1",
           "--seconds", "4", "--viewers", "1", "--json", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    assert "share rooms through local redis-server" in proc.stdout and "p95 one" in proc.stdout
    data = json.loads(out.read_text())
    rows = {r["scheduling"]: r for r in data["results"]}
    assert set(rows) == {"batched", "network", "bus"}
    one, bus = rows["network"], rows["bus"]
    assert bus["finals"] == one["finals"] >= 1 and bus["final_p95"] > 0
    for where in ("same_replica", "other_replica"):  # one viewer on each replica, every final
        assert bus["extra"][where]["viewer_finals_lost"] == 0 and bus["extra"][where]["viewer_final_p95"] > 0
    x = bus["extra"]["vs_one_replica"]
    assert x["one_p95"] == one["extra"]["viewer_final_p95"] and x["other_p95"] > 0
    assert x["other_x_p95"] == round(x["other_p95"] / x["one_p95"], 2)
    assert data["meta"]["bus"]["ratios"][0]["streams"] == 1 and "redis://" not in data["meta"]["bus"]["redis"]
    assert data["meta"]["largest_n_held"].keys() == {"batched", "network", "bus"}


def test_bus_bench_refuses_a_bus_that_is_not_redis(capsys):
    from glmasr_live.cli import main

    assert main(["bench-streams", "--bus", "http://:s3cret@example.org/0"]) == 2
    err = capsys.readouterr().err
    assert "--bus: give a redis://" in err and "s3cret" not in err
