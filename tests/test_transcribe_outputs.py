"""``transcribe``'s output paths and option values through the real CLI with the demo model:
every mistake is one ``glmasr-live: error:`` line and exit code 2 before the model loads (so
before any work), nothing is overwritten silently, and ``-o FILE|DIR/`` follows one rule."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import DEMO_MODEL

from glmasr_live.devtools import synth

pytestmark = [
    pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model missing"),
    pytest.mark.skipif(not all(shutil.which(p) for p in ("espeak-ng", "sox")), reason="needs espeak-ng, sox"),
]

EARLY_S = 20  # well under the model's load and a transcription on a busy machine


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glmasr_live", "transcribe", "--model", "demo", "-q", *args],
                          capture_output=True, text=True, timeout=180, cwd=cwd)  # fmt: skip


def error_line(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2 and p.stdout == "", (p.stdout, p.stderr)
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("glmasr-live: error:"), p.stderr
    return lines[0]


@pytest.fixture(scope="session")
def audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """b.wav, b.flac, b.ogg (one stem), a.wav, d1/x.wav, d2/x.wav: "one two three", made once."""
    d = tmp_path_factory.mktemp("speech")
    subprocess.run(["espeak-ng", "-w", str(d / "x.wav"), "one two three"], check=True)
    subprocess.run(["sox", str(d / "x.wav"), "-r", "16000", "-c", "1", str(d / "b.wav")], check=True)
    for name in ("b.flac", "b.ogg"):
        subprocess.run(["sox", str(d / "b.wav"), str(d / name)], check=True)
    for name in ("a.wav", "d1/x.wav", "d2/x.wav"):
        (d / name).parent.mkdir(exist_ok=True)
        shutil.copy(d / "b.wav", d / name)
    return d


@pytest.mark.parametrize(
    ("inputs", "clash"), [(["a.wav", "b.flac", "b.ogg"], "b.vtt"), (["d1/x.wav", "d2/x.wav"], "x.vtt")]
)
def test_two_inputs_of_one_name_are_refused_before_any_work(audio, tmp_path, inputs, clash):
    t0 = time.monotonic()
    line = error_line(run(*[str(audio / f) for f in inputs], "-o", f"{tmp_path}/out/", "--format", "vtt"))
    assert time.monotonic() - t0 < EARLY_S
    assert clash in line and all(str(audio / f) in line for f in inputs[-2:]), line
    assert not (tmp_path / "out").exists()


def test_an_output_path_that_cannot_be_written_fails_before_the_model_loads(audio, tmp_path):
    wav = str(audio / "b.wav")
    (tmp_path / "file").write_text("")
    (tmp_path / "d" / "b.srt").mkdir(parents=True)  # where DIR/NAME.FORMAT would go
    cases = [
        (["-o", "/nonexistent/x.srt"], "/nonexistent"),
        (["-o", str(tmp_path / "file" / "x.srt")], "not a directory"),
        (["-o", str(tmp_path / "file") + "/"], "not a directory"),
        (["-o", wav], "input file"),
        (["-o", str(tmp_path / "d") + "/", "--format", "srt"], "is a directory"),
        (["-o", ""], "-o"),
    ]
    for args, words in cases:
        t0 = time.monotonic()
        line = error_line(run(wav, *args))
        assert time.monotonic() - t0 < EARLY_S, args
        assert words in line, (args, line)


def test_several_inputs_need_a_directory(audio, tmp_path):
    a, b = str(audio / "a.wav"), str(audio / "b.wav")
    line = error_line(run(a, b, "-o", str(tmp_path / "single.srt")))
    assert "directory" in line and "ending in /" in line
    assert not (tmp_path / "single.srt").exists()
    error_line(run(a, b, "-o", str(tmp_path / "newdir")))  # neither existing nor ending in /
    assert not (tmp_path / "newdir").exists()


@pytest.mark.parametrize("existing", [False, True])
def test_one_input_into_a_directory_gets_dir_name_format(audio, tmp_path, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    target = str(out) if existing else f"{out}/"  # an existing one needs no slash
    p = run(str(audio / "b.wav"), "-o", target, "--format", "srt")
    assert p.returncode == 0, p.stderr
    assert [f.name for f in out.iterdir()] == ["b.srt"]
    assert "-->" in (out / "b.srt").read_text()


def test_several_inputs_into_a_new_directory(audio, tmp_path):
    p = run(str(audio / "a.wav"), str(audio / "b.flac"), "-o", f"{tmp_path}/subs/", "--format", "vtt")
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in (tmp_path / "subs").iterdir()) == ["a.vtt", "b.vtt"]


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "Infinity"])
def test_max_seconds_must_be_finite(audio, value):
    line = error_line(run(str(audio / "b.wav"), f"--max-seconds={value}"))
    assert "--max-seconds" in line and "Traceback" not in line


@pytest.mark.parametrize("mode", ["segmented", "whole"])
def test_a_huge_max_seconds_is_no_limit(audio, mode):
    p = run(str(audio / "b.wav"), "--max-seconds", "1e308", "--mode", mode)
    assert p.returncode == 0 and p.stdout.strip(), p.stderr
    assert p.stdout == run(str(audio / "b.wav"), "--mode", mode).stdout


@pytest.mark.parametrize("mode", ["segmented", "whole"])
def test_realtime_outside_streaming_is_refused(audio, mode):
    line = error_line(run(str(audio / "b.wav"), "--realtime", "--mode", mode))
    assert "--realtime" in line and "streaming" in line


@pytest.fixture(scope="module")
def file_107s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("long") / "s107.wav"
    t = np.arange(107 * 16000) / 16000
    synth.write_wav(path, (0.05 * np.sin(2 * np.pi * 300 * t)).astype(np.float32))
    return path


@pytest.mark.parametrize("extra", [[], ["--max-seconds", "106.8"], ["--max-seconds", "106.73"]])
def test_whole_refusal_states_a_limit_below_the_length(file_107s, extra):
    line = error_line(run(str(file_107s), "--mode", "whole", *extra))
    m = re.search(r": ([\d.]+) s is over .*\(([\d.]+) s\)", line)
    assert m, line
    length, limit = float(m.group(1)), float(m.group(2))
    assert length > limit and 106.6 < limit < 106.8, line  # the demo's limit is about 106.72 s
    assert "--mode segmented" in line
