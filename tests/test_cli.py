"""The command line: one clear line and exit code 2 for anything the user got wrong."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from glmasr_live.devtools import synth


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "glmasr_live", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("glmasr-live") and "Traceback" not in p.stderr
    return lines[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio\n" * 50)
    synth.write_wav(d / "ok.wav", np.zeros(16000, np.float32))
    data = (d / "ok.wav").read_bytes()
    (d / "cut.wav").write_bytes(data[: len(data) // 2])
    return d


@pytest.mark.parametrize("name", ["missing.wav", "empty.wav", "text.wav", "cut.wav"])
def test_bad_audio_file_one_line_exit_2_before_model_load(bad_files, name):
    t0 = time.monotonic()
    line = one_error_line(run("transcribe", str(bad_files / name), "--model", "demo"))
    assert name in line
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["transcribe", "x.wav", "--format", "xml"], "--format"),
        (["transcribe", "x.wav", "--encoder-padding", "some"], "--encoder-padding"),
        (["--vad-sensitivity", "2", "--no-tui"], "--vad-sensitivity"),
        (["--endpoint", "0.9", "--no-tui"], "--endpoint"),
        (["vad", "x.wav", "--endpoint", "soon"], "--endpoint"),
        (["transcribe", "x.wav", "--mode", "streaming", "--endpoint", "-1"], "--endpoint"),
        (["--ws", "localhost", "--no-tui", "--model", "demo"], "--ws"),
        (["--realtime", "--no-tui"], "--realtime"),
        # The policy's error names the bad value and what it is, not the flag.
        (["bench", "--policies", "fast"], "--policies"),
        (["bench", "--context", "-1"], "--context"),
        (["transcribe", "x.wav", "--mode", "streaming", "--context", "soon"], "--context"),
        (["--context", "-3", "--no-tui"], "--context"),
        (["--definitely-not-an-option"], "--definitely-not-an-option"),
    ],
)
def test_bad_option_values_name_the_flag(args, named):
    line = one_error_line(run(*args))
    assert "error:" in line and named in line, line


def test_default_model_not_cached_offline_names_the_fix(tmp_path):
    t0 = time.monotonic()
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    synth.write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    line = one_error_line(run("transcribe", str(tmp_path / "a.wav"), env=env))
    assert "zai-org/GLM-ASR-Nano-2512" in line and "HF_HUB_OFFLINE" in line and "--model PATH" in line
    assert time.monotonic() - t0 < 30


def test_default_model_unreachable_answers_within_10s(tmp_path):
    # No HF_HUB_OFFLINE: the engine checks that the hub is reachable instead of retrying for
    # minutes. An endpoint nobody listens on stands in for a machine without internet.
    synth.write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    env = {"HF_HUB_OFFLINE": "0", "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "https://127.0.0.1:9"}
    t0 = time.monotonic()
    p = run("transcribe", str(tmp_path / "a.wav"), env=env)
    line = one_error_line(p)
    assert "--model PATH" in line
    # model loading imports torch + transformers (several seconds on a busy machine) first
    assert time.monotonic() - t0 < 40


def test_model_path_that_is_not_a_model(tmp_path):
    synth.write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    line = one_error_line(run("transcribe", str(tmp_path / "a.wav"), "--model", str(tmp_path)))
    assert "config.json" in line


def test_help_is_fast_and_lists_commands():
    t0 = time.monotonic()
    p = run("--help")
    assert p.returncode == 0
    for cmd in ("transcribe", "demo", "devices", "vad", "eval", "bench"):
        assert cmd in p.stdout
    assert time.monotonic() - t0 < 10


def test_several_srt_files_need_an_output_directory(tmp_path):
    synth.write_wav(tmp_path / "a.wav", np.zeros(16000, np.float32))
    line = one_error_line(
        run("transcribe", str(tmp_path / "a.wav"), str(tmp_path / "a.wav"), "--format", "srt")
    )
    assert "-o DIR" in line


@pytest.mark.parametrize("value", ["abc", "-2"])
def test_bad_context_from_the_environment(value):
    line = one_error_line(run("--no-tui", "--model", "demo", env={"GLMASR_LIVE_CONTEXT": value}))
    assert "CONTEXT" in line or "--context" in line


@pytest.mark.parametrize("value", ["abc", "0.9"])
def test_bad_endpoint_from_the_environment(value):
    line = one_error_line(run("--no-tui", "--model", "demo", env={"GLMASR_LIVE_ENDPOINT": value}))
    assert "ENDPOINT" in line or "--endpoint" in line


def test_main_in_process_gives_back_the_callers_sigterm_handler(bad_files, capsys):
    """``main`` turns SIGTERM into a clean exit 130 while it runs and then puts the caller's
    handler back: a process that calls it (the tests, another program) and later forks must not
    hand its children a handler that raises instead of ending them."""
    import signal

    from glmasr_live.cli import main

    seen: list[int] = []

    def callers(signum: int, frame: object) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, callers)
    try:
        assert main(["vad", str(bad_files / "ok.wav")]) == 0
        assert signal.getsignal(signal.SIGTERM) is callers
        assert main(["vad", str(bad_files / "missing.wav")]) == 2
        assert signal.getsignal(signal.SIGTERM) is callers
        os.kill(os.getpid(), signal.SIGTERM)  # the caller's handler runs, not main's
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
    capsys.readouterr()
