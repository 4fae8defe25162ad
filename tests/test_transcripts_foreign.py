"""A journal path that holds something else (another tool's JSONL, a stray line) is refused and
left as it was; only a truly torn last write is repaired. Real files, and the live command run
as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from glmasr_live.captions.transcripts import CorruptJournal, TranscriptJournal, TranscriptWriter
from glmasr_live.events import CaptionEvent

ROOT = Path(__file__).resolve().parents[1]


def line(seq: int) -> bytes:
    ev = CaptionEvent(
        "final", seq, seq, seq * 2.0, seq * 2.0 + 1.5, f"text {seq}", "", f"text {seq}", 0.0, 0.0
    )
    return (ev.to_json() + "\n").encode()


GOOD = line(0) + line(1)


@pytest.mark.parametrize(
    ("content", "bad_line"),
    [
        (b"garbage\n", 1),
        (b'{"a":1}\n', 1),
        (b'{"a":1}', 1),  # no newline, but nothing a journal write begins with
        (b"garbage", 1),
        (GOOD + b"garbage\n", 3),  # a complete last line: written whole by someone, not torn
        (GOOD + b"[1, 2]\n", 3),
        (GOOD + b'{"type":"final"}\n', 3),
    ],
)
def test_a_file_that_is_not_a_journal_is_refused_and_left_alone(
    tmp_path: Path, content: bytes, bad_line: int
) -> None:
    path = tmp_path / "other.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorruptJournal, match=f"corrupt at line {bad_line}; move it aside") as err:
        TranscriptJournal(path)
    assert err.value.line == bad_line
    assert path.read_bytes() == content


@pytest.mark.parametrize(
    "tail",
    [line(2)[:20], b"{", b'{"ty' + b"\0" * 40, b"\0" * 512],
    ids=["cut", "one-byte", "cut-then-zeros", "zero-filled"],
)
def test_a_torn_last_write_is_still_repaired(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "j.jsonl"
    path.write_bytes(GOOD + tail)
    with TranscriptJournal(path) as j:
        assert j.repaired_bytes == len(tail) and j.next_seq == 2
    assert path.read_bytes() == GOOD


def test_a_whole_last_event_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    """The crash came between the line and its newline: the final is there, and not lost."""
    path = tmp_path / "j.jsonl"
    path.write_bytes(GOOD + line(2)[:-1])
    with TranscriptJournal(path) as j:
        assert j.repaired_bytes == 0 and j.next_seq == 3
    assert path.read_bytes() == GOOD + line(2)


def test_a_missing_directory_names_the_path_given(tmp_path: Path) -> None:
    given = tmp_path / "nonexist" / "x.srt"
    with pytest.raises(Exception, match="x.srt") as err:
        TranscriptWriter([given])
    assert ".journal" not in str(err.value) and str(given.parent) in str(err.value)


@pytest.fixture(scope="module")
def short_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import soundfile as sf

    audio, rate = sf.read(ROOT / "assets" / "demo.wav", dtype="float32")
    path = tmp_path_factory.mktemp("wav") / "some.wav"
    sf.write(path, audio[: int(4.4 * rate)], rate)
    return path


def _live(wav: Path, transcript: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "glmasr_live", "--model", "demo", "--input", str(wav), "--no-tui", "--no-ws",
           "--transcript", str(transcript)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=wav.parent)


@pytest.mark.parametrize("content", [b'{"a":1}\n', b"garbage\n"])
def test_the_live_command_does_not_overwrite_a_one_line_file(
    tmp_path: Path, short_wav: Path, content: bytes
) -> None:
    target = tmp_path / "other1.jsonl"
    target.write_bytes(content)
    done = _live(short_wav, target)
    assert done.returncode != 0 and "corrupt at line 1; move it aside" in done.stderr, done.stderr
    assert target.read_bytes() == content


def test_the_live_command_names_the_missing_directory_as_given(tmp_path: Path, short_wav: Path) -> None:
    target = tmp_path / "nonexist" / "x.srt"
    done = _live(short_wav, target)
    assert done.returncode != 0 and f"{target}" in done.stderr and ".journal" not in done.stderr, done.stderr
