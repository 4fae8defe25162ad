"""Nothing lost: files and pipes faster than the model wait for it (back-pressure), a transcript
that cannot be written and a broken input are errors the user sees, with a non-zero exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

DEMO = Path(__file__).resolve().parents[1] / "assets" / "demo.wav"
LIVE = [sys.executable, "-m", "glmasr_live", "--no-tui", "--no-ws", "--model", "demo"]


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """206 s (the demo recording five times, 50 utterances): more than the 120 s ring."""
    audio, rate = sf.read(DEMO, dtype="float32")
    path = tmp_path_factory.mktemp("long") / "long.wav"
    sf.write(path, np.concatenate([audio] * 5), rate, subtype="PCM_16")
    return path


def _finals(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line.startswith("[")]


def test_a_file_faster_than_the_model_loses_no_final(long_recording):
    r = subprocess.run([*LIVE, "--input", str(long_recording)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(_finals(r.stdout)) == 50, r.stdout
    assert "Traceback" not in r.stderr and "slower than real time" not in r.stderr, r.stderr


def test_a_pipe_faster_than_the_model_loses_no_final(long_recording, tmp_path):
    raw = tmp_path / "long.s16le"
    raw.write_bytes(sf.read(long_recording, dtype="int16")[0].tobytes())
    # Popen as a context manager closes cat's stdout and waits for it.
    with raw.open("rb") as f, subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE) as cat:
        r = subprocess.run(
            [*LIVE, "--input", "-"], stdin=cat.stdout, capture_output=True, text=True, timeout=300
        )
        cat.wait(30)
    assert r.returncode == 0, r.stderr
    assert len(_finals(r.stdout)) == 50
    assert "Traceback" not in r.stderr


def test_a_partial_trailing_frame_on_stdin_is_one_error_line(tmp_path):
    audio, _ = sf.read(DEMO, dtype="int16")
    data = audio[: 16000 * 6].tobytes() + b"\x01"  # one stray byte at the end
    r = subprocess.run([*LIVE, "--input", "-"], input=data, capture_output=True, timeout=120)
    err = r.stderr.decode()
    assert r.returncode == 2, err
    assert "glmasr-live: error:" in err and "partial sample" in err and "Traceback" not in err
    assert _finals(r.stdout.decode()), "the complete frames were still captioned"


def test_a_transcript_on_a_full_disk_is_an_error_not_a_silent_loss(full_disk):
    out = full_disk / "talk.srt"
    r = subprocess.run(
        [*LIVE, "--input", str(DEMO), "--transcript", str(out)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode != 0, r.stderr
    assert "glmasr-live: error:" in r.stderr and "transcript" in r.stderr and "No space left" in r.stderr
    assert "Traceback" not in r.stderr
    assert len(_finals(r.stdout)) == 10, "the captions themselves go on"


@pytest.fixture(scope="module")
def nan_recording(tmp_path_factory):
    """The demo recording as float WAV and raw f32le with a NaN at 10 s and +inf at 20 s."""
    audio, rate = sf.read(DEMO, dtype="float32")
    audio[int(10 * rate)] = np.nan
    audio[int(20 * rate)] = np.inf
    d = tmp_path_factory.mktemp("nan")
    sf.write(d / "nan.wav", audio, rate, subtype="FLOAT")
    (d / "nan.f32").write_bytes(audio.astype("<f4").tobytes())
    return d


@pytest.mark.parametrize("how", ["file", "stdin", "transcribe"])
def test_non_finite_samples_do_not_silence_the_rest(nan_recording, how):
    if how == "file":
        r = subprocess.run(
            [*LIVE, "--input", str(nan_recording / "nan.wav")], capture_output=True, text=True, timeout=120
        )
        lines = _finals(r.stdout)
    elif how == "stdin":
        with (nan_recording / "nan.f32").open("rb") as f:
            r = subprocess.run(
                [*LIVE, "--input", "-", "--stdin-format", "f32le"],
                stdin=f,
                capture_output=True,
                text=True,
                timeout=120,
            )
        lines = _finals(r.stdout)
    else:
        cmd = [
            sys.executable,
            "-m",
            "glmasr_live",
            "transcribe",
            str(nan_recording / "nan.wav"),
            "--model",
            "demo",
            "-q",
        ]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert r.returncode == 0, r.stderr
    assert len(lines) == 10, r.stdout  # every utterance, after the NaN and the inf too


def test_plain_mode_shows_the_caption_urls_with_a_generated_token():
    r = subprocess.run([sys.executable, "-m", "glmasr_live", "--no-tui", "--model", "demo", "--input", str(DEMO),
                        "--ws", "0.0.0.0:0"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stderr.splitlines() if "captions on ws://" in x)
    assert "?token=" in line and "/overlay?token=" in line
