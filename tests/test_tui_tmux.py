"""The terminal UI in a real terminal: a tmux pane of 80x24, keys sent with send-keys, the
screen read with capture-pane (polled until a deadline, never a fixed sleep).

Each test runs its own tmux server on a private socket (``tmux -L``) and kills only that one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMO_AUDIO = ROOT / "assets" / "demo.wav"
DEMO_MODEL = ROOT / "assets" / "demo-model"

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


class Pane:
    """One tmux server with one 80x24 pane running ``command`` through sh."""

    def __init__(self, command: str, cwd: Path, width: int = 80, height: int = 24) -> None:
        self.socket = f"glmasr-test-{uuid.uuid4().hex[:8]}"
        # The pane stays after the command ends, so its last screen can still be read.
        shell = f"cd {shlex.quote(str(cwd))} && {command}; echo EXIT=$?; exec sleep 600"
        self.tmux("new-session", "-d", "-s", "t", "-x", str(width), "-y", str(height), shell)

    def tmux(self, *args: str) -> str:
        cmd = ["tmux", "-L", self.socket, "-f", os.devnull, *args]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=20).stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-J", "-t", "t")  # -J: wrapped lines joined

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "t", *keys)

    def wait_for(self, condition: Callable[[str], object], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.screen()
            if condition(text):
                return text
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")
            time.sleep(0.1)  # polling the pane: tmux offers no change notification

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=20)


@pytest.fixture
def pane_factory() -> Iterator[Callable[[str, Path], Pane]]:
    panes: list[Pane] = []

    def make(command: str, cwd: Path) -> Pane:
        pane = Pane(command, cwd)
        panes.append(pane)
        return pane

    yield make
    for pane in panes:
        pane.close()


SCRIPTED_APP = r"""
import os, sys, threading
from pathlib import Path
from glmasr_live.captions.transcripts import write_transcript
from glmasr_live.events import CaptionEvent, SessionInfo
from glmasr_live.tui.app import run_app

out = Path(sys.argv[1])
Path(sys.argv[2]).write_text(str(os.getpid()))


def caption(kind, seq, utt, start, committed, tentative=""):
    text = committed + (" " + tentative if tentative else "")
    return CaptionEvent(kind, seq, utt, start, start + 1.5, committed, tentative, text, start + 2, 0.0)


class Session:
    def __init__(self):
        self.listeners, self.finals, self._paused = [], [], False
        self.done = threading.Event()

    @property
    def info(self):
        return SessionInfo("scripted", 16000, "demo", "cpu", "float32", None, (str(out),))

    @property
    def paused(self):
        return self._paused

    def set_paused(self, paused):
        self._paused = paused

    def subscribe(self, listener):
        self.listeners.append(listener)

    def save_transcript(self, path):
        return write_transcript(self.finals, path)

    def emit(self, event):
        if event.type == "final":
            self.finals.append(event)
        for listener in self.listeners:
            listener(event)

    def start(self):
        self.emit(caption("final", 0, 0, 1.0, "hello from tmux"))
        self.emit(caption("final", 1, 1, 3.0, "second caption 你好世界"))
        self.emit(caption("partial", 2, 2, 5.0, "the last", "wor"))

    def wait(self, timeout=None):
        return self.done.wait(timeout)

    def stop(self):  # the utterance still open is finished and written
        self.emit(caption("final", 3, 2, 5.0, "the last words"))
        write_transcript(self.finals, out)
        self.done.set()


print(f"EXIT_CODE={run_app(Session, title='tmux test')}")
"""


@pytest.mark.parametrize("how", ["q", "sigterm"])
def test_scripted_app_in_tmux(tmp_path: Path, pane_factory: Callable[[str, Path], Pane], how: str) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPTED_APP)
    out, pid_file = tmp_path / "out.txt", tmp_path / "pid"
    cmd = " ".join(shlex.quote(a) for a in [sys.executable, str(script), str(out), str(pid_file)])
    pane = pane_factory(cmd, ROOT)

    drawn = ("你好世界", "the last wor", "LIVE", "Quit")  # the footer is painted last
    screen = pane.wait_for(lambda s: all(x in s for x in drawn), 60, "the captions")
    assert "00:00:01  hello from tmux" in screen
    assert "00:00:03  second caption 你好世界" in screen  # wide characters, laid out in place

    if how == "q":
        pane.keys("q")
    else:
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
    screen = pane.wait_for(lambda s: "EXIT=" in s, 30, "the app to exit")
    assert "EXIT_CODE=0" in screen and "EXIT=0" in screen
    assert f"transcript: {out}" in screen
    assert "Traceback" not in screen
    assert out.read_text(encoding="utf-8") == "hello from tmux\nsecond caption 你好世界\nthe last words\n"


# A caption line: its start time, two spaces, its text (up to the pane's edge).
FINAL_LINE = re.compile(r"^\s*(\d\d:\d\d:\d\d)  (\S.*?)\s*$", re.M)
DEMO_TEXT = (ROOT / "assets" / "demo.txt").read_text(encoding="utf-8").splitlines()


@pytest.mark.slow
def test_live_command_in_tmux(tmp_path: Path, pane_factory: Callable[[str, Path], Pane]) -> None:
    """``glmasr-live --input FILE --realtime --model demo --no-ws --transcript OUT.txt``."""
    model = os.environ.get("GLMASR_TUI_TEST_MODEL", "demo")  # another model directory, if given
    if model == "demo" and not (DEMO_MODEL / "config.json").exists():
        pytest.skip(
            "the demo model is missing from assets/demo-model (train it: scripts/train_demo_model.py)"
        )
    out = tmp_path / "out.txt"
    exe = shutil.which("glmasr-live")
    prefix = [exe] if exe else [sys.executable, "-m", "glmasr_live"]
    args = [*prefix, "--input", str(DEMO_AUDIO), "--realtime", "--model", model, "--no-ws"]
    cmd = " ".join(shlex.quote(a) for a in [*args, "--transcript", str(out)])
    pane = pane_factory(cmd, tmp_path)

    pane.wait_for(lambda s: "LIVE" in s, 120, "the model to load")
    # The line being spoken is drawn like a final (time, then text) below the finals: with two
    # caption lines on screen the upper one is a final.
    screen = pane.wait_for(lambda s: len(FINAL_LINE.findall(s)) >= 2, 60, "a final caption")
    first = FINAL_LINE.search(screen)
    assert first is not None
    pane.keys("q")
    screen = pane.wait_for(lambda s: "EXIT=" in s, 60, "glmasr-live to exit")
    assert "EXIT=0" in screen and "Traceback" not in screen
    lines = out.read_text(encoding="utf-8").splitlines()
    # The transcript starts with the final the screen showed first, and that final is the
    # recording's first utterance: it starts within its first two seconds and shares most of its
    # words with the script it was rendered from (the demo model gets 3 % of characters wrong).
    assert lines[0] == first.group(2), (lines, screen)
    assert first.group(1) in ("00:00:00", "00:00:01"), screen
    said, script = lines[0].split(), DEMO_TEXT[0].split()
    assert len(set(said) & set(script)) >= len(script) - 1, (lines[0], DEMO_TEXT[0])
