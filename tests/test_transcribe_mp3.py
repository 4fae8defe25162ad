"""Cut MP3 files through ``transcribe`` with the demo model: the same text every run, only the
audio that decodes, and a cut that the file's own header reveals refused like a cut WAV."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from glmasr_live.audio.decode import load_audio
from glmasr_live.audio.filestream import open_file
from glmasr_live.errors import AudioInputError
from glmasr_live.events import SAMPLE_RATE

pytestmark = [
    pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model missing"),
    pytest.mark.skipif(
        not all(shutil.which(p) for p in ("espeak-ng", "sox", "ffmpeg")),
        reason="needs espeak-ng, sox, ffmpeg",
    ),
]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glmasr_live", "transcribe", "--model", "demo", "-q", *args],
                          capture_output=True, text=True, timeout=180)  # fmt: skip


@pytest.fixture(scope="session")
def mp3s(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Speech as MP3 with a Xing/Info header (ffmpeg's default) and without; each also cut short."""
    d = tmp_path_factory.mktemp("mp3")
    subprocess.run(["espeak-ng", "-w", str(d / "x.wav"), "one two three four five six seven"], check=True)
    subprocess.run(["sox", str(d / "x.wav"), "-r", "16000", "-c", "1", str(d / "b.wav")], check=True)
    ff = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(d / "b.wav")]
    subprocess.run([*ff, str(d / "header.mp3")], check=True)
    subprocess.run([*ff, "-write_xing", "0", str(d / "bare.mp3")], check=True)
    out = {}
    for name in ("header", "bare"):
        data = (d / f"{name}.mp3").read_bytes()
        (d / f"cut-{name}.mp3").write_bytes(data[: len(data) * 6 // 10])  # as `head -c`
        out[name], out[f"cut-{name}"] = d / f"{name}.mp3", d / f"cut-{name}.mp3"
    return out


def test_a_cut_mp3_streams_only_the_audio_that_decodes(mp3s):
    # libsndfile's frame count for a cut MP3 is past what decodes; the blocks must not fill
    # the difference from an uninitialised buffer.
    f = open_file(mp3s["cut-bare"])
    decoded = load_audio(mp3s["cut-bare"])
    for _ in range(3):
        streamed = np.concatenate(list(f.blocks()))
        assert len(streamed) == len(decoded)
        np.testing.assert_allclose(streamed, decoded, atol=1e-6)


def test_a_cut_mp3_without_a_header_gives_the_same_text_every_run(mp3s):
    runs = [run(str(mp3s["cut-bare"]), "--format", "jsonl") for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()
    decoded_s = len(load_audio(mp3s["cut-bare"])) / SAMPLE_RATE
    last = json.loads(runs[0].stdout.splitlines()[-1])
    assert last["end"] <= decoded_s + 1e-3, (last, decoded_s)
    assert "Xing" not in runs[0].stderr


def test_a_cut_mp3_whose_header_tells_is_refused_with_one_line(mp3s):
    p = run(str(mp3s["cut-header"]))
    assert p.returncode == 2 and p.stdout == "", p.stderr
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, p.stderr  # no "Warning: Xing stream size off" from the decoder either
    assert lines[0].startswith("glmasr-live: error:") and "truncated or corrupt" in lines[0], lines
    assert "cut-header.mp3" in lines[0]
    with pytest.raises(AudioInputError, match="truncated or corrupt"):
        load_audio(mp3s["cut-header"])
    kept = load_audio(mp3s["cut-header"], allow_truncated=True)  # what a crashed recorder left
    assert 0 < len(kept) < len(load_audio(mp3s["header"]))


def test_whole_mp3s_with_and_without_a_header_are_accepted(mp3s):
    for name in ("header", "bare"):
        f = open_file(mp3s[name])
        assert f.duration is not None and f.duration > 1.5
        assert abs(len(np.concatenate(list(f.blocks()))) - len(load_audio(mp3s[name]))) == 0
