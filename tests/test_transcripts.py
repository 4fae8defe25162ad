"""Transcript durability: journal repair, kill -9, atomic SRT/VTT/TXT read back by other parsers."""

from __future__ import annotations

import html
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from glmasr_live.captions.transcripts import (
    TranscriptError,
    TranscriptJournal,
    TranscriptWriter,
    render_srt,
    sidecar_journal,
    write_srt,
    write_txt,
    write_vtt,
)
from glmasr_live.errors import ConfigError
from glmasr_live.events import CaptionEvent

SCHEMA = Path(__file__).resolve().parents[1] / "assets" / "caption-event.schema.json"


def final(seq: int, text: str, start: float, end: float) -> CaptionEvent:
    return CaptionEvent("final", seq, seq, start, end, text, "", text, end + 0.3, 1_700_000_000.0 + seq)


TEXTS = ["Hello world.", "你好，世界。这是一个测试。", "a < b && c > d --> e", "Zweite   Zeile\nmit Umbruch"]


def sample(n: int = 4, first_seq: int = 0) -> list[CaptionEvent]:
    return [final(first_seq + i, TEXTS[i % len(TEXTS)], 2.0 * i + 0.1, 2.0 * i + 1.7) for i in range(n)]


def test_journal_round_trip_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with TranscriptJournal(path) as j:
        assert j.last_seq == -1 and j.next_seq == 0
        for e in sample(3):
            j.append(e)
    with TranscriptJournal(path) as j:
        assert j.finals == sample(3)
        assert j.next_seq == 3 and j.resume_clock == pytest.approx(5.7)
        with pytest.raises(ValueError, match="does not follow"):
            j.append(final(2, "again", 6, 7))
        with pytest.raises(ValueError, match="finals only"):
            j.append(CaptionEvent("partial", 3, 3, 6, 7, "x", "y", "x y", 7, 0.0))
        j.append(final(3, "more", 6, 7))
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(x)["seq"] for x in lines] == [0, 1, 2, 3]


def test_torn_last_line_is_repaired(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    with TranscriptJournal(path) as j:
        for e in sample(2):
            j.append(e)
    intact = path.read_bytes()
    with path.open("ab") as f:
        f.write(final(2, "cut short", 5, 6).to_json().encode()[:37])
    with TranscriptJournal(path) as j:
        assert j.repaired_bytes == 37
        assert j.finals == sample(2) and j.next_seq == 2
        j.append(final(2, "after repair", 5, 6))
    assert path.read_bytes().startswith(intact)
    assert [CaptionEvent.from_json(x).seq for x in path.read_text().splitlines()] == [0, 1, 2]


@pytest.fixture(scope="module")
def journal_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("full") / "j.jsonl"
    with TranscriptJournal(path) as j:
        for e in sample(8):
            j.append(e)
    return path.read_bytes()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10_000))
def test_any_truncation_keeps_every_complete_line(tmp_path: Path, journal_bytes: bytes, cut: int) -> None:
    data = journal_bytes
    cut = cut % (len(data) + 1)
    path = tmp_path / f"cut{cut}.jsonl"
    path.write_bytes(data[:cut])
    complete = data[:cut].count(b"\n")
    if data[cut : cut + 1] == b"\n" and data[:cut].rsplit(b"\n", 1)[-1]:
        complete += 1  # cut just before a newline: the whole event is there, and kept
    with TranscriptJournal(path) as j:
        assert j.finals == sample(8)[:complete]
    assert path.read_bytes() == b"".join(data.splitlines(keepends=True)[:complete])


def test_corrupt_middle_line_is_an_error_not_a_silent_loss(tmp_path: Path) -> None:
    path = tmp_path / "j.jsonl"
    lines = [e.to_json() for e in sample(3)]
    lines[1] = "{garbage"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(TranscriptError, match="corrupt at line 2"):
        TranscriptJournal(path)


def test_fsync_error_is_fatal_for_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = TranscriptJournal(tmp_path / "j.jsonl")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    # The one mock here: a real fsync failure needs a failing disk.
    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(TranscriptError, match="Input/output error"):
        j.append(final(0, "lost", 0, 1))
    monkeypatch.undo()
    with pytest.raises(TranscriptError, match="failed earlier"):
        j.append(final(1, "still refused", 1, 2))
    j.close()


def test_srt_vtt_txt_parsed_by_independent_parsers(tmp_path: Path) -> None:
    finals = sample(8)
    write_srt(finals, tmp_path / "t.srt")
    write_vtt(finals, tmp_path / "t.vtt")
    write_txt(finals, tmp_path / "t.txt")

    subs = list(srt.parse((tmp_path / "t.srt").read_text(encoding="utf-8")))
    assert [s.index for s in subs] == list(range(1, 9))
    for sub, ev in zip(subs, finals, strict=True):
        assert sub.start.total_seconds() == pytest.approx(ev.start, abs=1e-3)
        assert sub.end.total_seconds() == pytest.approx(ev.end, abs=1e-3)
        assert sub.content == " ".join(ev.text.split()).replace("-->", "->")

    vtt_text = (tmp_path / "t.vtt").read_bytes().decode("utf-8")
    assert vtt_text.startswith("WEBVTT\n")
    captions = webvtt.read(str(tmp_path / "t.vtt"))
    assert len(captions) == 8
    for cap, ev in zip(captions.captions, finals, strict=True):
        assert cap.start_time.in_milliseconds() == round(ev.start * 1000)
        assert cap.end_time.in_milliseconds() == round(ev.end * 1000)
        assert html.unescape(cap.text) == " ".join(ev.text.split()).replace("-->", "->")
    assert "&lt;" in vtt_text and "&amp;&amp;" in vtt_text  # markup escaped, text intact

    txt = (tmp_path / "t.txt").read_text(encoding="utf-8").splitlines()
    assert txt[1] == "你好，世界。这是一个测试。" and len(txt) == 8
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
def test_ffmpeg_reads_both_subtitle_files(tmp_path: Path) -> None:
    finals = sample(4)
    write_srt(finals, tmp_path / "t.srt")
    write_vtt(finals, tmp_path / "t.vtt")
    for name in ("t.srt", "t.vtt"):
        out = tmp_path / (name + ".ass")
        r = subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(tmp_path / name), str(out)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        assert "你好，世界" in out.read_text(encoding="utf-8")


def test_times_never_go_back_when_a_new_run_appends(tmp_path: Path) -> None:
    # A restarted session whose clock began at 0 again: cues follow the earlier ones.
    finals = [final(0, "one", 10, 12), final(1, "two", 13, 15), final(2, "three", 0.5, 2)]
    subs = list(srt.parse(render_srt(finals)))
    starts = [s.start.total_seconds() for s in subs]
    assert starts == sorted(starts) and starts[2] >= 15


def test_writer_uses_sidecar_journal_and_continues_after_restart(tmp_path: Path) -> None:
    out_srt, out_vtt, out_txt = tmp_path / "m.srt", tmp_path / "m.vtt", tmp_path / "m.txt"
    w = TranscriptWriter([out_srt, out_vtt, out_txt])
    assert w.next_seq == 0
    w.append(CaptionEvent("partial", 0, 0, 0, 1, "ignored", "", "ignored", 1, 0))
    for e in sample(3, first_seq=1):
        w.append(e)
    w.close()
    assert sidecar_journal(out_srt).exists() and sidecar_journal(out_srt).name.startswith(".")
    assert len(list(srt.parse(out_srt.read_text(encoding="utf-8")))) == 3

    # A crash between the journal append and the regeneration: reopening catches up.
    with TranscriptJournal(sidecar_journal(out_srt)) as j:
        j.append(final(4, "written just before the crash", 7, 8))
    w = TranscriptWriter([out_srt, out_vtt, out_txt])
    assert w.next_seq == 5
    assert len(webvtt.read(str(out_vtt))) == 4
    assert out_txt.read_text(encoding="utf-8").splitlines()[-1] == "written just before the crash"
    w.close()


def test_writer_refuses_to_clobber_and_unknown_formats(tmp_path: Path) -> None:
    (tmp_path / "old.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nprecious\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="already exists"):
        TranscriptWriter([tmp_path / "old.srt"])
    with pytest.raises(ConfigError, match="unknown transcript format"):
        TranscriptWriter([tmp_path / "x.doc"])
    with pytest.raises(ConfigError, match="at most one"):
        TranscriptWriter([tmp_path / "a.jsonl", tmp_path / "b.jsonl"])


def test_journal_lines_match_the_published_schema(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text(encoding="utf-8")))
    path = tmp_path / "j.jsonl"
    w = TranscriptWriter([path])
    for e in sample(4):
        w.append(e)
    w.close()
    for line in path.read_text(encoding="utf-8").splitlines():
        validator.validate(json.loads(line))


CHILD = textwrap.dedent(
    """
    import sys, time
    from glmasr_live.captions.transcripts import TranscriptWriter
    from glmasr_live.events import CaptionEvent
    w = TranscriptWriter(sys.argv[1:])
    seq = w.next_seq
    clock = w.resume_clock
    while True:
        text = f"final number {seq} " + "word " * (seq % 7)
        end = clock + 1.5
        w.append(CaptionEvent("final", seq, seq, clock, end, text, "", text, end + 0.3, time.time()))
        print(seq, flush=True)  # acknowledged: on disk before this line is written
        seq += 1
        clock += 2.0
    """
)


def test_sigkill_mid_meeting_loses_no_acknowledged_final(tmp_path: Path) -> None:
    paths = [str(tmp_path / "meeting.jsonl"), str(tmp_path / "meeting.srt"), str(tmp_path / "meeting.vtt")]
    acked: list[int] = []
    for _run in range(3):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *paths], stdout=subprocess.PIPE, text=True, env=_child_env()
        )
        assert child.stdout is not None
        first = None
        for line in child.stdout:
            seq = int(line)
            first = seq if first is None else first
            acked.append(seq)
            if seq - first >= 25:
                break
        child.send_signal(signal.SIGKILL)  # mid-meeting, probably mid-write
        child.wait(timeout=30)
        child.stdout.close()
    j = TranscriptJournal(paths[0])
    seqs = [e.seq for e in j.finals]
    assert set(acked) <= set(seqs)
    assert seqs == list(range(len(seqs)))  # continued across restarts, no gap, no duplicate
    j.close()
    w = TranscriptWriter(paths)  # the restart regenerates SRT/VTT from the journal
    assert len(list(srt.parse(Path(paths[1]).read_text(encoding="utf-8")))) == len(seqs)
    assert len(webvtt.read(paths[2])) == len(seqs)
    w.close()


def _child_env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def test_one_writer_per_journal_highest_seq_and_only_finals(tmp_path):
    from glmasr_live.captions.transcripts import TranscriptError, TranscriptJournal

    path = tmp_path / "j.jsonl"
    lines = [
        CaptionEvent("final", 5, 0, 0.0, 1.0, "a", "", "a", 1.0, 0.0),
        CaptionEvent("final", 3, 1, 1.0, 2.0, "b", "", "b", 2.0, 0.0),  # interleaved by two writers
        CaptionEvent("partial", 9, 2, 2.0, 3.0, "c", "d", "c d", 3.0, 0.0),  # never a final
    ]
    path.write_text("".join(e.to_json() + "\n" for e in lines))
    with TranscriptJournal(path) as j:
        assert [e.text for e in j.finals] == ["a", "b"]
        assert j.next_seq == 6 and j.next_utterance == 2 and j.resume_clock == 2.0
        with pytest.raises(TranscriptError, match="another glmasr-live session"):
            TranscriptJournal(path)
    TranscriptJournal(path).close()  # free again once the first one closed


def test_a_restarted_session_continues_numbering_clock_and_utterances(tmp_path):
    import json
    import subprocess
    import sys

    demo = Path(__file__).resolve().parents[1] / "assets" / "demo.wav"
    journal = tmp_path / "t.jsonl"
    cmd = [sys.executable, "-m", "glmasr_live", "--no-tui", "--no-ws", "--model", "demo", "--input", str(demo),
           "--transcript", str(journal)]  # fmt: skip
    for _ in range(2):
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
    finals = [json.loads(line) for line in journal.read_text().splitlines()]
    assert len(finals) == 20
    assert [f["seq"] for f in finals] == sorted({f["seq"] for f in finals})
    assert [f["utterance"] for f in finals] == list(range(20))
    starts = [f["start"] for f in finals]
    assert starts == sorted(starts) and starts[10] >= finals[9]["end"]  # the second run follows on
