"""Durable transcripts: an append-only JSONL journal of finals, and SRT/VTT/TXT made from it.

The journal is the source of truth: each final is written, then fsynced, before ``append``
returns, so a final that was acknowledged survives ``kill -9`` or a power cut. SRT, VTT and TXT
are regenerated from the journal after each final and replaced atomically (temp file in the
same directory, fsync, ``os.replace``), so a reader never sees half a file. All times are
seconds of stream audio (the events' ``start``/``end``), never wall time.

Everything here blocks on disk: call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from glmasr_live.errors import ConfigError, GlmAsrLiveError
from glmasr_live.events import CaptionEvent

FORMATS = (".jsonl", ".srt", ".vtt", ".txt")
MIN_CUE_SECONDS = 0.5
"""A cue shorter than this (or with end <= start) is stretched so that players show it."""


class TranscriptError(GlmAsrLiveError):
    """A transcript file cannot be read or written (disk full, fsync failure, corrupt journal)."""


class CorruptJournal(TranscriptError):
    """A journal line (``line``, 1-based) that is neither an event nor a torn last write; the
    file is left as it is: it may be someone's data (another tool's JSONL given by mistake)."""

    def __init__(self, path: Path, line: int) -> None:
        super().__init__(f"transcript journal {path} is corrupt at line {line}; move it aside")
        self.path, self.line = path, line


JOURNAL_LINE_START = b'{"type":"'  # how every line of ours begins, a torn one too


class TranscriptJournal:
    """Append-only JSONL journal of final caption events, one ``CaptionEvent.to_json()`` a line.

    Opening it repairs a torn last line (a write cut short by a crash: it was never
    acknowledged) by truncating to the last complete line; any other bad line is
    ``CorruptJournal`` (see ``parse_journal``). ``next_seq`` and ``resume_clock`` tell a
    restarted session where to continue so that sequence numbers and times go on.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.repaired_bytes = 0
        self._finals: list[CaptionEvent] = []
        self._max_seq: int | None = None
        self._failed: OSError | None = None
        self._fd: int | None = None
        self._open()

    def _open(self) -> None:
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise TranscriptError(f"cannot open transcript {self.path}: {exc.strerror}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise TranscriptError(
                f"transcript {self.path} is being written by another glmasr-live session; "
                "give this one another name"
            ) from None
        try:
            data = _read_all(fd)
            finals, good = parse_journal(data, self.path)
            self._finals.extend(finals)
            if good < len(data):
                self.repaired_bytes = len(data) - good
                os.ftruncate(fd, good)
                os.fsync(fd)
            elif data and not data.endswith(b"\n"):  # a kept last line gets its newline back
                os.write(fd, b"\n")
                os.fsync(fd)
            if created:
                _fsync_dir(self.path.parent)  # the new name itself must survive a crash
        except OSError as exc:
            os.close(fd)
            raise TranscriptError(f"cannot repair transcript {self.path}: {exc.strerror}") from exc
        except TranscriptError:
            os.close(fd)
            raise
        self._fd = fd

    @property
    def finals(self) -> list[CaptionEvent]:
        return list(self._finals)

    @property
    def last_seq(self) -> int:
        """The highest sequence number in the journal, -1 when empty (lines of two sessions
        may be out of order in a journal written before journals were locked)."""
        if self._max_seq is None:
            self._max_seq = max((e.seq for e in self._finals), default=-1)
        return self._max_seq

    @property
    def next_utterance(self) -> int:
        """The utterance id a restarted session continues with."""
        return max((e.utterance for e in self._finals), default=-1) + 1

    @property
    def next_seq(self) -> int:
        return self.last_seq + 1

    @property
    def resume_clock(self) -> float:
        """Stream time where a restarted session should start its audio clock (end of last final)."""
        return max((e.end for e in self._finals), default=0.0)

    def append(self, event: CaptionEvent) -> None:
        """Write one final and fsync it; when this returns the final is on disk."""
        if event.type != "final":
            raise ValueError(f"the journal keeps finals only, not {event.type!r}")
        if event.seq <= self.last_seq:
            raise ValueError(
                f"seq {event.seq} does not follow {self.last_seq}: start the session at next_seq"
            )
        if self._failed is not None or self._fd is None:
            raise TranscriptError(f"transcript {self.path} is closed or failed earlier")
        line = (event.to_json() + "\n").encode("utf-8")
        try:
            view = memoryview(line)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except OSError as exc:
            # After a failed fsync the kernel may have dropped the dirty pages: nothing written
            # to this file can be trusted any more, so it stays failed.
            self._failed = exc
            raise TranscriptError(f"cannot write transcript {self.path}: {exc.strerror}") from exc
        self._finals.append(event)
        self._max_seq = event.seq

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TranscriptJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_journal(data: bytes, path: Path) -> tuple[list[CaptionEvent], int]:
    """A journal's finals and the length of its intact prefix. Only the piece after the last
    newline may be dropped, when it is a torn write of ours (cut off before its newline, or
    zero-filled; a whole event missing only its newline is kept); a complete bad line was
    written whole by something else: CorruptJournal."""
    finals: list[CaptionEvent] = []
    lines = data.split(b"\n")
    offset = 0
    for i, raw in enumerate(lines[:-1]):
        if raw.strip():
            try:
                event = CaptionEvent.from_json(raw.decode("utf-8"))
            except (ValueError, TypeError, AttributeError) as exc:
                raise CorruptJournal(path, i + 1) from exc
            if event.type == "final":  # anything else was never ours to keep
                finals.append(event)
        offset += len(raw) + 1
    tail = lines[-1]
    if tail.strip(b"\0").strip():
        try:  # a whole line whose newline alone was lost (the crash came between them): kept
            event = CaptionEvent.from_json(tail.decode("utf-8"))
        except (ValueError, TypeError, AttributeError):
            if not _torn(tail):
                raise CorruptJournal(path, len(lines)) from None
        else:
            finals += [event] if event.type == "final" else []
            offset += len(tail)
    return finals, offset


def _torn(tail: bytes) -> bool:
    head = tail.strip(b"\0")[: len(JOURNAL_LINE_START)]  # zero-filled: the size grew, no data came
    return JOURNAL_LINE_START.startswith(head)


def check_journal(path: Path) -> None:
    """CorruptJournal (or OSError) if the journal at ``path`` would be refused; read only."""
    with contextlib.suppress(FileNotFoundError):
        parse_journal(path.read_bytes(), path)


# -- SRT / VTT / TXT ----------------------------------------------------------------------------


def _cues(finals: Iterable[CaptionEvent]) -> list[tuple[float, float, str, str]]:
    """(start, end, text, speaker) per non-empty final, in stream seconds, never going back in time.

    Stream time going backwards means another run appended to the same journal with a fresh
    clock: its cues are shifted to follow the earlier ones instead of overlapping them.
    """
    cues: list[tuple[float, float, str, str]] = []
    offset = 0.0
    for event in finals:
        text = _clean(event.text)
        if not text:
            continue
        start = event.start + offset
        if cues and start < cues[-1][0]:
            offset += cues[-1][1] - start
            start = cues[-1][1]
        end = max(event.end + offset, start + MIN_CUE_SECONDS)
        cues.append((start, end, text, _clean(event.speaker or "").replace(":", "")))
    return cues


def _clean(text: str) -> str:
    return " ".join(text.split()).replace("-->", "->")


def _timestamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _said(text: str, speaker: str) -> str:
    return f"{speaker}: {text}" if speaker else text


def render_srt(finals: Iterable[CaptionEvent]) -> str:
    """SRT; a speaker's cue reads ``Alice: text``."""
    blocks = [
        f"{i}\n{_timestamp(a, ',')} --> {_timestamp(b, ',')}\n{_said(text, who)}\n"
        for i, (a, b, text, who) in enumerate(_cues(finals), start=1)
    ]
    return "\n".join(blocks)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def render_vtt(finals: Iterable[CaptionEvent]) -> str:
    """WebVTT; a speaker's cue is a voice span (``<v Alice>text``), as players label speakers."""
    out = ["WEBVTT\n"]
    for a, b, text, who in _cues(finals):
        body = f"<v {_escape(who)}>{_escape(text)}" if who else _escape(text)
        out.append(f"\n{_timestamp(a, '.')} --> {_timestamp(b, '.')}\n{body}\n")
    return "".join(out)


def render_txt(finals: Iterable[CaptionEvent]) -> str:
    """One line per final; a speaker's line reads ``Alice: text``."""
    return "".join(f"{_said(text, who)}\n" for _, _, text, who in _cues(finals))


def write_srt(finals: Iterable[CaptionEvent], path: str | os.PathLike[str]) -> None:
    write_atomic(Path(path), render_srt(finals))


def write_vtt(finals: Iterable[CaptionEvent], path: str | os.PathLike[str]) -> None:
    write_atomic(Path(path), render_vtt(finals))


def write_txt(finals: Iterable[CaptionEvent], path: str | os.PathLike[str]) -> None:
    write_atomic(Path(path), render_txt(finals))


def write_jsonl(finals: Iterable[CaptionEvent], path: str | os.PathLike[str]) -> None:
    write_atomic(Path(path), "".join(e.to_json() + "\n" for e in finals))


_RENDERERS = {".srt": render_srt, ".vtt": render_vtt, ".txt": render_txt}


def write_transcript(finals: Sequence[CaptionEvent], path: str | os.PathLike[str]) -> Path:
    """Write ``finals`` in the format named by the suffix of ``path`` (atomic); return the path."""
    p = Path(path)
    fmt = p.suffix.lower()
    if fmt == ".jsonl":
        write_jsonl(finals, p)
    elif fmt in _RENDERERS:
        write_atomic(p, _RENDERERS[fmt](finals))
    else:
        raise ConfigError(f"unknown transcript format {p.name!r}: use .jsonl, .srt, .vtt or .txt")
    return p


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) so that readers see the old or the new file, whole."""
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise TranscriptError(f"cannot write transcript {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text.encode("utf-8"))
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise TranscriptError(f"cannot write transcript {path}: {exc.strerror}") from exc
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the writer a session uses ------------------------------------------------------------------


def sidecar_journal(path: Path) -> Path:
    """Hidden journal kept next to an SRT/VTT/TXT output when no .jsonl was asked for."""
    return path.with_name(f".{path.name}.journal.jsonl")


class TranscriptWriter:
    """Keeps the transcript files a session was asked for; format from each path's suffix.

    One ``.jsonl`` path is the journal itself; without one, a hidden sidecar journal is kept
    next to the first SRT/VTT/TXT path so that a crash loses nothing. Reopening the same paths
    continues the transcript (see ``next_seq`` / ``resume_clock``). Not thread-safe: one thread
    (the transcript sink's worker) calls ``append`` and ``close``.
    """

    def __init__(self, paths: Iterable[str | os.PathLike[str]], order_by_start: bool = False) -> None:
        self.order_by_start = order_by_start
        journals: list[Path] = []
        self.outputs: list[tuple[Path, str]] = []
        for p in map(Path, paths):
            fmt = p.suffix.lower()
            if fmt not in FORMATS:
                raise ConfigError(f"unknown transcript format {p.name!r}: use .jsonl, .srt, .vtt or .txt")
            if fmt == ".jsonl":
                journals.append(p)
            else:
                self.outputs.append((p, fmt))
        if len(journals) > 1:
            raise ConfigError("give at most one .jsonl transcript")
        if not journals and not self.outputs:
            raise ConfigError("no transcript paths given")
        journal_path = journals[0] if journals else sidecar_journal(self.outputs[0][0])
        if not journal_path.parent.is_dir():
            # Name the path the user gave, not the hidden sidecar journal made from it.
            given = journals[0] if journals else self.outputs[0][0]
            raise TranscriptError(f"cannot write transcript {given}: no directory {given.parent}")
        fresh = not journal_path.exists()
        for p, _ in self.outputs:
            if fresh and p.exists() and p.stat().st_size > 0:
                # Without its journal we cannot continue this file, only clobber it.
                raise ConfigError(f"{p} already exists and has no journal to continue; pick another name")
        self.journal = TranscriptJournal(journal_path)
        if self.journal.finals:
            self._regenerate()  # a crash may have come between a journal append and this

    @property
    def finals(self) -> list[CaptionEvent]:
        return self.journal.finals

    @property
    def next_seq(self) -> int:
        return self.journal.next_seq

    @property
    def resume_clock(self) -> float:
        return self.journal.resume_clock

    @property
    def next_utterance(self) -> int:
        return self.journal.next_utterance

    def append(self, event: CaptionEvent) -> None:
        """Record a final (others are ignored): journal + fsync first, then the derived files."""
        if event.type != "final":
            return
        self.journal.append(event)
        self._regenerate()

    def _regenerate(self) -> None:
        finals = self.journal.finals
        if self.order_by_start:
            # Several speakers' finals arrive in the order their utterances *ended*; the
            # derived files read in the order they began (the journal keeps arrival order).
            finals.sort(key=lambda e: e.start)
        for path, fmt in self.outputs:
            write_atomic(path, _RENDERERS[fmt](finals))

    def close(self) -> None:
        self.journal.close()


def _read_all(fd: int) -> bytes:
    chunks = []
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
