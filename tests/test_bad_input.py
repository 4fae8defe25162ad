"""Bad input to the live command, table-driven: each is one ``glmasr-live: error:`` line and a
non-zero exit, never a traceback, never exit 0 after losing text."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo.wav"
LIVE = f"{shlex.quote(sys.executable)} -m glmasr_live --no-tui --no-ws --model demo"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "random.mp3").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    (d / "empty.wav").write_bytes(b"")
    (d / "partial.s16le").write_bytes(b"\x00\x01" * 8000 + b"\x01")
    (d / "bad.toml").write_text("interval = -1\n")
    (d / "garbage.f32le").write_bytes(np.random.default_rng(1).integers(0, 256, 64000, np.uint8).tobytes())
    os.mkfifo(d / "pipe.fifo")
    return d


CASES = [
    # (shell arguments and redirections; {d} is the inputs folder), words the error line holds
    ("--input - </dev/null", "no audio arrived"),
    ("--input - <&-", "standard input is closed"),
    ("--input - --stdin-rate 1 <{demo}", "rate from 1000"),
    ("--input - --stdin-channels 0 <{demo}", "1 to 64 channels"),
    ("--input - <{d}/partial.s16le", "partial sample"),
    ("--input {d}/missing.wav", "missing.wav"),
    ("--input {d}/random.mp3", "not a readable audio file"),
    ("--input {d}/pipe.fifo", "is a pipe, not a file"),
    ("--input {d}/empty.wav", "empty.wav"),
    ("--input {demo} --interval nan", "--interval"),
    ("--input {demo} --interval inf", "--interval"),
    ("--input {demo} --vad-sensitivity 2", "--vad-sensitivity"),
    ("--input - --stdin-format s24le <{demo}", "--stdin-format"),
    # A bad value names where it came from: the variable or the config file, not a flag.
    ("--input {demo} --config {d}/bad.toml", "interval (config file) must be > 0"),
    ("--input {demo} --env GLMASR_LIVE_VAD_SENSITIVITY=5", "GLMASR_LIVE_VAD_SENSITIVITY must be"),
    ("--input {demo} --env GLMASR_LIVE_INTERVAL=inf", "GLMASR_LIVE_INTERVAL must be a finite number"),
]


@pytest.mark.parametrize(("args", "words"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_a_non_zero_exit(inputs, args, words):
    env = dict(os.environ)
    if " --env " in args:  # not a flag: the variable goes into the environment
        args, _, var = args.partition(" --env ")
        env.update([var.split("=", 1)])
    cmd = f"{LIVE} " + args.format(d=inputs, demo=DEMO)
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120, env=env)
    errors = [line for line in r.stderr.splitlines() if line.startswith("glmasr-live: error:")]
    assert r.returncode != 0, (cmd, r.stderr)
    assert len(errors) == 1 and words in errors[0], (cmd, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr


def test_an_ipv6_address_without_brackets_is_one_error_line():
    r = subprocess.run([sys.executable, "-m", "glmasr_live", "--no-tui", "--model", "demo", "--input", str(DEMO),
                        "--ws", "::1"], capture_output=True, text=True, timeout=60)  # fmt: skip
    assert r.returncode == 2 and "in brackets, e.g. [::1]:8765" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("name", ["random.mp3", "empty.wav", "missing.wav"])
def test_a_bad_file_is_refused_before_torch_is_imported(inputs, name):
    """The user waits for the model only when the input is good (torch alone takes seconds)."""
    code = (
        "import sys\n"
        "from glmasr_live.cli import build_parser\n"
        "from glmasr_live.commands.live import resolve, settings_from\n"
        "from glmasr_live.errors import GlmAsrLiveError\n"
        "from glmasr_live.pipeline import LivePipeline\n"
        f"args = build_parser().parse_args(['--no-tui', '--no-ws', '--model', 'demo', '--input', {str(inputs / name)!r}])\n"
        "try:\n"
        "    LivePipeline(settings_from(resolve(args))).start()\n"
        "except GlmAsrLiveError as e:\n"
        "    print('refused:', e)\n"
        "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "refused:" in r.stdout and "torch not loaded" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["transcribe", "--max-seconds", "x", "a.wav"], "--max-seconds: not a number"),
        (["vad", "--vad-sensitivity", "2", "a.wav"], "--vad-sensitivity"),
        (["serve", "--interval", "inf"], "--interval: must be a finite number"),
    ],
)
def test_a_subcommand_error_starts_like_every_other(argv, words):
    """argparse would print "glmasr-live transcribe: error:"; the README promises one prefix."""
    r = subprocess.run(
        [sys.executable, "-m", "glmasr_live", *argv], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("glmasr-live: error:") and words in r.stderr, r.stderr
    assert f"({argv[0]} --help)" in r.stderr


def test_garbage_float_input_is_handled_without_a_warning(inputs):
    """Random bytes read as f32le: NaN, infinities and 1e38s. Clipped at the ring buffer, they
    reach no stage as overflowing arithmetic (numpy would warn on stderr)."""
    cmd = f"{LIVE} --input - --stdin-format f32le <{inputs}/garbage.f32le"
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Warning" not in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_partial_sample_on_stdin_is_reported_once(inputs):
    cmd = f"{LIVE} --input - <{inputs}/partial.s16le"
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("partial sample") == 1, r.stderr
    assert "stdin: stdin:" not in r.stderr
