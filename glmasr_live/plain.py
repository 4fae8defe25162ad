"""The plain front end (``--no-tui``, or stdout not a terminal): caption lines, no Textual.

stdout carries exactly the finals, one per line: ``[HH:MM:SS] text`` (the time the utterance
starts in the stream, the text with its whitespace collapsed; empty finals are skipped), so the
lines match the TXT transcript and the websocket finals one for one. Everything else goes to
stderr: start-up and stop messages, status events, and -- only when stderr is a terminal --
the partial caption, redrawn in place on one line and erased before each final.

Ctrl-C, SIGTERM and SIGHUP stop the session gracefully (the current utterance is finished and
printed); a second one stops waiting for it.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import threading
import unicodedata
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import TextIO

from glmasr_live.events import CaptionEvent, PipelineStats, format_clock
from glmasr_live.session import SessionFactory

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def use_tui(no_tui: bool = False, stdin: TextIO | None = None, stdout: TextIO | None = None) -> bool:
    """The terminal UI needs a terminal on both ends (keys in, screen out) and a capable TERM."""
    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    if no_tui or os.environ.get("TERM", "") in ("", "dumb"):
        return False
    try:
        return stdin.isatty() and stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def final_line(event: CaptionEvent) -> str | None:
    """The stdout line for a final, or None when it has no text."""
    text = " ".join(event.text.split())
    return f"[{format_clock(event.start)}] {text}" if text else None


def cells(ch: str) -> int:
    if unicodedata.combining(ch):
        return 0
    return 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def tail_to_width(text: str, width: int) -> str:
    """The end of ``text`` that fits in ``width`` terminal cells (CJK counts two)."""
    used, start = 0, len(text)
    while start > 0 and used + cells(text[start - 1]) <= width:
        start -= 1
        used += cells(text[start])
    return ("…" + text[start + 1 :]) if start > 0 and width > 1 else text[start:]


class PlainPrinter:
    """The session listener of the plain front end (called on a pipeline thread)."""

    def __init__(
        self, out: TextIO, err: TextIO, partials: bool, on_broken: Callable[[], None] | None = None
    ) -> None:
        self.out = out
        self.err = err
        self.partials = partials
        self.on_broken = on_broken
        self.broken = threading.Event()
        """Set when stdout is gone (``| head``): nothing more can be printed."""
        self._lock = threading.Lock()
        self._partial_shown = False

    def __call__(self, item: CaptionEvent | PipelineStats) -> None:
        if isinstance(item, PipelineStats) or self.broken.is_set():
            return
        with self._lock:
            try:
                self._print(item)
            except (BrokenPipeError, ValueError):  # ValueError: write to a closed file
                self.broken.set()
                if self.on_broken is not None:
                    self.on_broken()  # captions would go nowhere: stop the session

    def _print(self, event: CaptionEvent) -> None:
        if event.type == "final":
            self._erase_partial()
            line = final_line(event)
            if line is not None:
                self.out.write(line + "\n")
                self.out.flush()
        elif event.type == "partial":
            if self.partials and event.text:
                width = shutil.get_terminal_size((80, 24)).columns - 1
                line = tail_to_width(f"[{format_clock(event.start)}] {' '.join(event.text.split())}", width)
                self.err.write("\r\x1b[K" + line)
                self.err.flush()
                self._partial_shown = True
        else:
            self.message(event.message or event.status or "status")

    def _erase_partial(self) -> None:
        if self._partial_shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self._partial_shown = False

    def message(self, text: str) -> None:
        """A line on stderr that does not collide with a partial being drawn."""
        with suppress(BrokenPipeError, ValueError):
            self._erase_partial()
            self.err.write(f"glmasr-live: {text}\n")
            self.err.flush()


class _StopRequest:
    """Waits in the main thread until ``set()`` or a stop signal; a second signal gives up.

    A signal can be delivered to any thread, and a main thread blocked on a lock is not woken
    by one caught elsewhere. So the main thread sleeps in select() on the signal wakeup fd,
    which the interpreter's C handler writes whichever thread caught the signal.
    """

    def __init__(self) -> None:
        self.done = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, object] = {}
        self._pipe: tuple[int, int] | None = None
        self._old_wakeup = -1
        self._lock = threading.Lock()

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            r, w = os.pipe()
            os.set_blocking(r, False)
            os.set_blocking(w, False)
            self._pipe = (r, w)
            self._old_wakeup = signal.set_wakeup_fd(w)
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        with self._lock:
            if self._pipe is not None:
                signal.set_wakeup_fd(self._old_wakeup)
                for fd in self._pipe:
                    os.close(fd)
                self._pipe = None

    def set(self) -> None:
        """Any thread: end the wait."""
        self.done.set()
        with self._lock:
            if self._pipe is not None:
                with suppress(OSError):
                    os.write(self._pipe[1], b"\0")

    def wait(self) -> None:
        if self._pipe is None:
            self.done.wait()
            return
        r = self._pipe[0]
        while not self.done.is_set():
            select.select([r], [], [])
            with suppress(BlockingIOError):
                os.read(r, 4096)  # the Python-level handler runs after this, in this thread

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum
        self.done.set()


def run_plain(make_session: SessionFactory, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Print finals to ``out`` until the input ends or Ctrl-C/SIGTERM; return the exit code.

    Start-up errors (GlmAsrLiveError) propagate: the CLI prints them as one line. Ctrl-C while
    the model loads aborts at once (KeyboardInterrupt); once captions run it stops gracefully.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    request = _StopRequest()
    printer = PlainPrinter(out, err, partials=_isatty(err), on_broken=request.set)
    session = make_session()
    session.subscribe(printer)
    printer.message("loading the model…")
    try:
        session.start()
    except BaseException:
        with suppress(Exception):
            session.stop()  # whatever start() got going (threads, sockets) is let go
        raise
    info = session.info
    printer.message(f"listening to {info.input_name or 'the default input'}; Ctrl-C stops")
    if info.ws_url:  # with the token when one is needed: without it a LAN bind is unusable
        printer.message(f"captions on {info.ws_url}; OBS overlay: {info.overlay_url}")

    failure: list[BaseException] = []

    def wait_for_end() -> None:
        try:
            session.wait(None)
        except Exception as e:
            failure.append(e)
        request.set()

    with request:  # handlers in place before anything can end the wait
        threading.Thread(target=wait_for_end, name="plain-wait", daemon=True).start()
        request.wait()
        if request.signum is not None:
            printer.message("stopping: finishing the current utterance…")
        session.stop()
    if failure:
        raise failure[0]
    for path in info.transcripts:
        printer.message(f"transcript: {path}")
    return 0


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
