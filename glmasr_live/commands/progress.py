"""A one-line progress bar on stderr for ``transcribe``: files, audio done, speed, time left.

Shown only when stderr is a terminal (never in a pipe or a log file) and not ``--quiet``.
The line is redrawn at most every ``interval_s`` (carriage return, erase to the end), and
erased when the run ends so that what remains on the terminal is the transcript.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """Files done of all, audio seconds done of the total (when known), × real time, time left."""

    def __init__(self, files: int, audio_s: float | None, stream: TextIO | None = None,
                 enabled: bool | None = None, interval_s: float = 0.2) -> None:  # fmt: skip
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.files, self.audio_s = files, audio_s
        self.interval_s = interval_s
        self.t0 = time.monotonic()
        self._last = 0.0
        self._files_done = 0
        self._shown = False

    def line(self, files_done: int, audio_done_s: float, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.t0, 1e-6)
        speed = audio_done_s / elapsed
        total = f" / {clock(self.audio_s)}" if self.audio_s else ""
        head = f"files {files_done}/{self.files}  audio {clock(audio_done_s)}{total}  {speed:.1f}× real time"
        if self.audio_s and speed > 0 and audio_done_s > 0:
            head += f"  {clock((self.audio_s - audio_done_s) / speed)} left"
            width = shutil.get_terminal_size((80, 20)).columns - len(head) - 4
            if width >= 10:
                n = int(width * min(1.0, audio_done_s / self.audio_s))
                head = f"[{'#' * n}{'.' * (width - n)}] {head}"
        return head

    def update(self, files_done: int, audio_done_s: float, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and files_done == self._files_done and now - self._last < self.interval_s:
            return
        self._last, self._files_done = now, files_done
        self.stream.write("\r" + self.line(files_done, audio_done_s, now) + "\033[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        """Erase the line (before text goes to the same terminal); the next update redraws it."""
        if self.enabled and self._shown:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._shown = False

    close = clear
