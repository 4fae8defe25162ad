"""Offline transcription of long files end to end through the CLI, with the demo model:
segmented (the default), whole (refused past its limit), subtitles, progress bar, batching."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys

import numpy as np
import pytest
from conftest import DEMO_MODEL, cer

from glmasr_live.devtools import synth
from glmasr_live.events import SAMPLE_RATE

pytestmark = pytest.mark.skipif(not DEMO_MODEL.exists(), reason="demo model missing")


def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "glmasr_live", *args], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="session")
def long_file(tmp_path_factory):
    """2.5 minutes of 38 utterances (held-out voices, light noise), built once per session."""
    from glmasr_live.devtools.longform import long_recording

    rec = long_recording(150.0, seed=1)
    path = tmp_path_factory.mktemp("long") / "long150.wav"
    synth.write_wav(path, rec.audio)
    return path, rec


@pytest.fixture(scope="session")
def segmented_srt(long_file, tmp_path_factory):
    path, _ = long_file
    out = tmp_path_factory.mktemp("subs")
    p = run("transcribe", str(path), "--model", "demo", "-o", str(out / "long150.srt"))
    assert p.returncode == 0, p.stderr
    return (out / "long150.srt").read_text(encoding="utf-8")


def _norm(text: str) -> str:
    from glmasr_live.devtools.eval import normalize

    return normalize(text).replace(" ", "")


def test_a_multi_minute_file_is_transcribed_completely_and_as_well_as_streaming(long_file):
    path, rec = long_file
    seg = run("transcribe", str(path), "--model", "demo")
    assert seg.returncode == 0, seg.stderr
    assert seg.stderr == ""  # piped: no progress bar
    lines = seg.stdout.splitlines()
    assert abs(len(lines) - len(rec.utterances)) <= 3
    last_words = rec.utterances[-1][0]
    assert cer(_norm(last_words), _norm(lines[-1])) <= 0.3, (last_words, lines[-1])
    seg_cer = cer(_norm(rec.reference), _norm(seg.stdout))
    streaming = run("transcribe", str(path), "--model", "demo", "--mode", "streaming")
    assert streaming.returncode == 0, streaming.stderr
    stream_cer = cer(_norm(rec.reference), _norm(streaming.stdout))
    assert seg_cer <= 0.05 and seg_cer <= stream_cer + 0.01, (seg_cer, stream_cer)


def test_srt_cues_obey_the_limits_follow_the_speech_and_parse(segmented_srt, long_file):
    import srt

    from glmasr_live.captions.cues import cells

    _, rec = long_file
    cues = list(srt.parse(segmented_srt))
    assert len(cues) >= len(rec.utterances) - 3
    for c in cues:
        lines = c.content.split("\n")
        assert len(lines) <= 2 and all(cells(line) <= 42 for line in lines), c
        assert 1.0 - 1e-3 <= (c.end - c.start).total_seconds() <= 7.0 + 1e-3, c
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))
    # Each utterance's start is within 0.3 s of the start of a cue.
    starts = np.array([c.start.total_seconds() for c in cues])
    near = [np.min(np.abs(starts - u_start)) for _, u_start, _ in rec.utterances]
    assert float(np.median(near)) < 0.15 and sum(d > 0.3 for d in near) <= 3, near


def test_vtt_parses_with_webvtt(long_file, tmp_path):
    import webvtt

    path, _ = long_file
    out = tmp_path / "x.vtt"
    p = run("transcribe", str(path), "--model", "demo", "--max-seconds", "40", "-o", str(out))
    assert p.returncode == 0, p.stderr
    captions = webvtt.read(str(out)).captions
    assert len(captions) >= 5
    assert all(c.end_in_seconds <= 40.5 for c in captions)


def test_whole_refuses_a_file_past_its_limit_with_one_line(long_file):
    path, _ = long_file
    p = run("transcribe", str(path), "--model", "demo", "--mode", "whole")
    assert p.returncode == 2 and p.stdout == ""
    lines = [line for line in p.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--mode segmented" in lines[0] and "Traceback" not in p.stderr, p.stderr


def test_whole_is_the_seed_call_token_for_token(demo_engine, three_utterances):
    from glmasr_live.audio.decode import load_audio

    path, _, _ = three_utterances
    audio = load_audio(path)
    seed = demo_engine.transcribe([audio])[0].text  # the seed's call: one file, cap from its length
    p = run("transcribe", str(path), "--model", "demo", "--mode", "whole")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == " ".join(seed.split())


def test_progress_bar_on_a_terminal_only(long_file):
    path, _ = long_file
    controller, worker = pty.openpty()
    cmd = [
        sys.executable,
        "-m",
        "glmasr_live",
        "transcribe",
        str(path),
        "--model",
        "demo",
        "--max-seconds",
        "60",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=worker, stdin=subprocess.DEVNULL)
    os.close(worker)
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert proc.wait(timeout=60) == 0
    text = seen.decode(errors="replace")
    assert "× real time" in text and "files 1/1" in text, text
    quiet = subprocess.run(cmd + ["--quiet"], capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 0 and "real time" not in quiet.stderr


def test_a_piece_reads_the_same_alone_and_batched(demo_engine, long_file):
    from glmasr_live import pieces

    _, rec = long_file
    audio = rec.audio[: 40 * SAMPLE_RATE]
    cut = pieces.cut(audio, demo_engine.window_samples)
    clips = [audio[p.start_sample : p.end_sample] for p in cut]
    caps = [demo_engine.max_new_tokens(p.seconds) for p in cut]
    alone = [demo_engine.transcribe([c], [k])[0].token_ids for c, k in zip(clips, caps, strict=True)]
    batched = [t.token_ids for t in demo_engine.transcribe(clips, caps)]
    same = sum(a == b for a, b in zip(alone, batched, strict=True))
    assert same >= len(cut) - 1, (alone, batched)  # padding may move one greedy argmax at most


def test_the_streaming_cutter_finds_the_pieces_cut_finds(long_file):
    from glmasr_live import pieces

    _, rec = long_file
    audio = rec.audio[: 60 * SAMPLE_RATE]
    whole = pieces.cut(audio, 96000)
    cutter = pieces.PieceCutter(96000)
    got = []
    for k in range(0, len(audio), 7777):
        got += cutter.feed(audio[k : k + 7777])
    got += cutter.flush()
    assert [c.piece for c in got] == whole
    assert all(np.array_equal(c.audio, audio[c.piece.start_sample : c.piece.end_sample]) for c in got)


def test_ffmpeg_formats_stream_the_same_as_loading_whole(tmp_path):
    from glmasr_live.audio.decode import load_audio
    from glmasr_live.audio.filestream import open_file

    rng = np.random.default_rng(0)
    synth.write_wav(tmp_path / "a.wav", (rng.standard_normal(44100 * 3) * 0.1).astype(np.float32), 44100)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(tmp_path / "a.wav"), str(tmp_path / "a.m4a")],
                   check=True)  # fmt: skip
    for name in ("a.wav", "a.m4a"):
        f = open_file(tmp_path / name)
        streamed = np.concatenate(list(f.blocks(block_s=0.37)))
        assert f.duration == pytest.approx(3.0, abs=0.05)
        assert np.allclose(streamed, load_audio(tmp_path / name), atol=1e-6)


def test_eval_runs_segmented_and_whole(three_utterances, tmp_path):
    import json

    path, refs, _ = three_utterances
    (tmp_path / "m.jsonl").write_text(json.dumps({"audio": str(path), "text": " ".join(refs)}) + "\n")
    p = run("eval", str(tmp_path / "m.jsonl"), "--model", "demo", "--mode", "segmented", "--json", "-")
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["modes"] == ["segmented"] and report["overall"]["en"]["segmented"]["rate"] < 0.2
