"""The terminal UI and the plain front end, driven through the real app (App.run_test).

Most tests use ScriptedSession, a LiveSession that emits scripted captions and stats: the UI is
the thing under test. The end-to-end tests at the bottom run the real LivePipeline on a file
with the demo model.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from rich.console import Console

from glmasr_live.captions.transcripts import write_transcript
from glmasr_live.errors import DeviceError, ModelLoadError, ServerError
from glmasr_live.events import CaptionEvent, PipelineStats, SessionInfo
from glmasr_live.plain import final_line, run_plain, tail_to_width, use_tui
from glmasr_live.session import Listener

textual = pytest.importorskip("textual")

from textual import events  # noqa: E402
from textual.pilot import Pilot  # noqa: E402
from textual.widgets import Input  # noqa: E402

from glmasr_live.tui.app import CaptionApp  # noqa: E402
from glmasr_live.tui.caption_history import CaptionHistory  # noqa: E402
from glmasr_live.tui.caption_text import caption_body, wrap_caption  # noqa: E402
from glmasr_live.tui.current_line import CurrentLine  # noqa: E402
from glmasr_live.tui.error_panel import ErrorPanel  # noqa: E402
from glmasr_live.tui.help_screen import HelpScreen  # noqa: E402
from glmasr_live.tui.level_meter import level_bar  # noqa: E402
from glmasr_live.tui.loading_panel import LoadingPanel, parse_progress  # noqa: E402
from glmasr_live.tui.log_routing import route_logging  # noqa: E402
from glmasr_live.tui.save_dialog import SaveDialog  # noqa: E402
from glmasr_live.tui.status_bar import StatusBar, engine_text, outputs_text  # noqa: E402

SIZE = (80, 24)
INFO = SessionInfo(
    input_name="talk.wav",
    input_rate=16000,
    model="demo",
    device="cpu",
    dtype="float32",
    ws_url=None,
    transcripts=(),
)


# -- a scripted session ----------------------------------------------------------------------


def partial(seq: int, utt: int, start: float, committed: str, tentative: str) -> CaptionEvent:
    from glmasr_live.events import join_text

    text = join_text(committed, tentative)
    return CaptionEvent("partial", seq, utt, start, start + 1.0, committed, tentative, text, start + 1.2, 0.0)


def final(seq: int, utt: int, start: float, text: str) -> CaptionEvent:
    return CaptionEvent("final", seq, utt, start, start + 2.0, text, "", text, start + 2.3, 0.0)


STATS = PipelineStats(
    audio_clock=12.5,
    level_dbfs=-23.0,
    speech=True,
    gain_db=6.0,
    step_ms=120.0,
    rtf=0.35,
    latency_s=0.8,
    dropped_samples=0,
    subscribers=0,
)


class ScriptedSession:
    """A LiveSession whose captions come from the test. ``gate`` holds start() (loading)."""

    def __init__(
        self,
        info: SessionInfo = INFO,
        *,
        fail: BaseException | None = None,
        gate: threading.Event | None = None,
        on_start: list[CaptionEvent | PipelineStats] | None = None,
        on_stop: list[CaptionEvent] | None = None,
        end_after_start: bool = False,
        wait_error: BaseException | None = None,
    ) -> None:
        self._info = info
        self._paused = False
        self.fail = fail
        self.gate = gate
        self.on_start = on_start or []
        self.on_stop = on_stop or []
        self.end_after_start = end_after_start
        self.wait_error = wait_error
        self.listeners: list[Listener] = []
        self.finals: list[CaptionEvent] = []
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.waiting = threading.Event()
        self.ended = threading.Event()
        self.stop_calls = 0

    @property
    def info(self) -> SessionInfo:
        return self._info

    def subscribe(self, listener: Listener) -> None:
        self.listeners.append(listener)

    def set_paused(self, paused: bool) -> None:
        self._paused = paused

    @property
    def paused(self) -> bool:
        return self._paused

    def save_transcript(self, path: Path) -> Path:
        return write_transcript(self.finals, path)

    def start(self) -> None:
        if self.gate is not None:
            assert self.gate.wait(30), "the test never opened the gate"
        if self.fail is not None:
            raise self.fail
        self.started.set()
        for item in self.on_start:
            self.emit(item)
        if self.end_after_start:
            self.ended.set()

    def emit(self, item: CaptionEvent | PipelineStats) -> None:
        if isinstance(item, CaptionEvent) and item.is_final:
            self.finals.append(item)
        for listener in self.listeners:
            listener(item)

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting.set()
        if self.wait_error is not None:
            raise self.wait_error
        return self.ended.wait(timeout)

    def stop(self) -> None:
        self.stop_calls += 1
        if not self.stopped.is_set():
            for event in self.on_stop:  # the utterance still open is finished
                self.emit(event)
        self.stopped.set()
        self.ended.set()


def make_app(session: ScriptedSession, **kwargs: object) -> CaptionApp:
    return CaptionApp(lambda: session, model="demo", loading_tick=None, handle_signals=False, **kwargs)  # type: ignore[arg-type]


async def wait_until(pilot: Pilot[None], condition: Callable[[], object], timeout: float = 10.0) -> None:
    """Let the app process messages until ``condition()`` holds (threads post them)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            line = condition.__code__.co_firstlineno  # type: ignore[attr-defined]
            raise AssertionError(f"timed out waiting for the condition on line {line}")
        await pilot.pause(0.02)


def run(coro_fn: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(coro_fn())  # type: ignore[arg-type]


def history(app: CaptionApp) -> list[str]:
    return app.query_one(CaptionHistory).texts


# -- the app with a scripted session -----------------------------------------------------------


def test_loading_then_captions_then_quit_flushes_final() -> None:
    gate = threading.Event()
    session = ScriptedSession(gate=gate, on_stop=[final(9, 2, 8.0, "and the last one")])
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            assert app.state == "loading"
            assert app.query_one("#main").current == "loading"  # type: ignore[attr-defined]
            gate.set()
            await wait_until(pilot, lambda: app.state == "live")
            assert app.query_one("#main").current == "captions"  # type: ignore[attr-defined]
            session.emit(STATS)
            session.emit(partial(0, 0, 1.0, "hello", "wor"))
            await wait_until(pilot, lambda: app.query_one(CurrentLine).text == "hello wor")
            session.emit(final(1, 0, 1.0, "hello world"))
            session.emit(partial(2, 1, 4.0, "", "second"))
            await wait_until(pilot, lambda: history(app) == ["hello world"])
            await wait_until(pilot, lambda: app.query_one(CurrentLine).text == "second")
            # a late partial of an utterance whose final is shown is ignored
            session.emit(partial(3, 0, 1.0, "hello", "world again"))
            await pilot.pause()
            assert app.query_one(CurrentLine).text == "second"
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)
        assert session.stop_calls == 1
        assert app.return_code == 0
        assert [e.text for e in app.finals] == ["hello world", "and the last one"]

    run(body)


def test_quit_while_loading_stops_the_session_when_it_has_started() -> None:
    gate = threading.Event()
    session = ScriptedSession(gate=gate)
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("q")  # the model is still loading: leave at once
            await wait_until(pilot, lambda: not app.is_running)

    run(body)
    assert app.return_code == 0
    app.closed()  # what run_app does once the app has ended
    gate.set()  # ...and then the model finished loading
    assert session.stopped.wait(10) and session.stop_calls == 1


def test_keys_pause_clear_finals_only_help() -> None:
    session = ScriptedSession(on_start=[final(0, 0, 0.5, "one"), partial(1, 1, 3.0, "two", "three")])
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.query_one(CurrentLine).text == "two three")
            assert history(app) == ["one"]

            await pilot.press("space")
            assert session.paused and app.state == "paused"
            assert "PAUSED" in str(app.query_one("#state").render())
            await pilot.press("space")
            assert not session.paused and app.state == "live"

            await pilot.press("f")
            assert not app.query_one(CurrentLine).display
            await pilot.press("f")
            assert app.query_one(CurrentLine).display

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

            await pilot.press("c")
            assert history(app) == [] and app.query_one(CurrentLine).text == ""
            session.emit(final(2, 1, 3.0, "two three four"))
            await wait_until(pilot, lambda: history(app) == ["two three four"])
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)
        assert app.return_code == 0

    run(body)


def test_save_asks_for_a_path_then_saves_there(tmp_path: Path) -> None:
    session = ScriptedSession(on_start=[final(0, 0, 0.5, "first words"), final(1, 1, 3.0, "more words")])
    app = make_app(session)
    target = tmp_path / "saved.srt"

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: len(history(app)) == 2)
            await pilot.press("s")
            assert isinstance(app.screen, SaveDialog)
            field = app.screen.query_one(Input)
            field.value = str(tmp_path / "bad.doc")
            await pilot.press("enter")
            assert isinstance(app.screen, SaveDialog)  # refused: unknown format, dialog stays
            assert "must end in" in str(app.screen.query_one("#save-problem").render())
            field.value = str(target)
            await pilot.press("q")  # typed into the field, not a quit
            assert app.is_running and "q" in field.value.replace(str(tmp_path), "")
            field.value = str(target)
            await pilot.press("enter")
            await wait_until(pilot, lambda: app.saved_path == target)
            assert "first words" in target.read_text() and "more words" in target.read_text()
            assert str(target) in str(app.query_one("#outputs").render())

            session.emit(final(2, 2, 6.0, "later"))
            await wait_until(pilot, lambda: len(history(app)) == 3)
            await pilot.press("s")  # the path is known now: no dialog
            assert not isinstance(app.screen, SaveDialog)
            await wait_until(pilot, lambda: "later" in target.read_text())
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)

    run(body)


def test_save_with_a_configured_transcript_does_not_ask_and_escape_cancels(tmp_path: Path) -> None:
    out = tmp_path / "talk.txt"
    info = SessionInfo("mic", 48000, "demo", "cpu", "float32", None, (str(out),))
    session = ScriptedSession(info, on_start=[final(0, 0, 0.5, "hello there")])
    app = make_app(session)
    notes: list[str] = []
    app.notify = lambda message, **kwargs: notes.append(message)  # type: ignore[method-assign,assignment,misc]

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: history(app) == ["hello there"])
            await pilot.press("s")  # the session's writer keeps it: just say so
            await pilot.pause()
            assert not isinstance(app.screen, SaveDialog)
            assert any("up to date" in n for n in notes)
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)

    run(body)

    app2 = make_app(ScriptedSession())

    async def cancel() -> None:
        async with app2.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app2.state == "live")
            await pilot.press("s")
            assert isinstance(app2.screen, SaveDialog)
            await pilot.press("escape")
            assert not isinstance(app2.screen, SaveDialog) and app2.saved_path is None
            await pilot.press("q")
            await wait_until(pilot, lambda: not app2.is_running)

    run(cancel)


def test_input_end_ctrl_c_and_a_failure_while_running() -> None:
    ended = ScriptedSession(on_start=[final(0, 0, 0.5, "all of it")], end_after_start=True)
    app = make_app(ended)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.state == "ended")
            assert "ENDED" in str(app.query_one("#state").render())
            await pilot.press("ctrl+c")  # same as q: stop() then exit
            await wait_until(pilot, lambda: not app.is_running)
        assert ended.stop_calls == 1 and app.return_code == 0

    run(body)

    from glmasr_live.errors import AudioInputError

    broken = ScriptedSession(wait_error=AudioInputError("the input device went away"))
    app2 = make_app(broken)

    async def failing() -> None:
        async with app2.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app2.state == "error")
            assert app2.query_one("#main").current == "captions"  # type: ignore[attr-defined]
            await pilot.press("q")  # the session still gets stopped (flushed, closed)
            await wait_until(pilot, lambda: not app2.is_running)
        assert broken.stop_calls == 1 and app2.return_code == 2

    run(failing)


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        (DeviceError("no audio input device found"), "glmasr-live devices"),
        (ModelLoadError("model x is not in the local cache and the hub cannot be reached"), "--model demo"),
        (ServerError("cannot listen on 127.0.0.1:8765: address already in use"), "--no-ws"),
    ],
)
def test_start_error_is_shown_with_its_fix(error: Exception, fix: str) -> None:
    session = ScriptedSession(fail=error)
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.state == "error")
            panel = app.query_one(ErrorPanel)
            assert app.query_one("#main").current == "error"  # type: ignore[attr-defined]
            assert str(error) in str(panel.query_one("#error-message").render())
            assert fix in str(panel.query_one("#error-fix").render())
            await pilot.press("space")  # nothing to pause: no crash
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)
        assert app.return_code == 2
        assert session.stop_calls == 1  # what a failed start got going is let go

    run(body)


def test_loading_shows_download_progress_and_log_steps() -> None:
    gate = threading.Event()

    def factory() -> ScriptedSession:
        sys.stderr.write("model.safetensors:  45%|████▌     | 2.03G/4.51G [00:10<00:12, 200MB/s]\r")
        return ScriptedSession(gate=gate)

    app = CaptionApp(factory, model="zai-org/GLM-ASR-Nano-2512", loading_tick=None, handle_signals=False)

    async def body() -> None:
        with route_logging(app):
            async with app.run_test(size=SIZE) as pilot:
                panel = app.query_one(LoadingPanel)
                await wait_until(pilot, lambda: panel.percent == 45.0)
                assert panel.stage.startswith("model.safetensors:  45%")
                logging.getLogger("glmasr_live.pipeline").info("warming up the model")
                await wait_until(pilot, lambda: panel.stage == "warming up the model")
                gate.set()
                await wait_until(pilot, lambda: app.state == "live")
                await pilot.press("q")
                await wait_until(pilot, lambda: not app.is_running)

    run(body)


def test_status_bar_fields() -> None:
    info = SessionInfo(
        "USB Mic [hw:1,0]",
        48000,
        "zai-org/GLM-ASR-Nano-2512",
        "cuda",
        "bfloat16",
        "ws://127.0.0.1:8765",
        ("a.srt", "a.jsonl"),
    )
    stats = PipelineStats(
        level_dbfs=-40,
        step_ms=85,
        rtf=0.12,
        latency_s=0.6,
        dropped_samples=8000,
        skipped_partials=3,
        subscribers=2,
    )
    engine = engine_text(info, stats)
    assert "step 85 ms" in engine and "RTF 0.12" in engine and "latency 0.6 s" in engine
    assert "dropped 0.5 s (3 partials skipped)" in engine and "GLM-ASR-Nano-2512 cuda bfloat16" in engine
    outputs = outputs_text(info, stats, None)
    assert outputs == "ws://127.0.0.1:8765 (2 subscribers) │ transcript: a.srt +1"
    assert "websocket off" in outputs_text(INFO, None, None)
    assert (
        level_bar(0.0) == "█" * 12 and level_bar(-60.0) == " " * 12 and level_bar(-30.0).startswith("██████")
    )

    session = ScriptedSession(info, on_start=[stats])
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.query_one(StatusBar).stats is not None)
            bar = app.query_one(StatusBar)
            assert "USB Mic [hw:1,0] (48 kHz)" in str(bar.query_one("#input").render())
            assert "-40 dBFS" in str(bar.query_one("LevelMeter").render())
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)

    run(body)


def test_cjk_wraps_by_cells_and_history_scrolls() -> None:
    console = Console(width=40)
    lines = wrap_caption(console, 3723.0, caption_body("三五七九" * 6, "零一"), 40)
    assert lines[0].plain.startswith("01:02:03  三五七九")
    assert all(line.cell_len == 40 for line in lines)
    assert "".join(line.plain[10:].strip() for line in lines) == "三五七九" * 6 + "零一"

    texts = [f"caption number {i} 中文字幕测试" for i in range(40)]
    session = ScriptedSession(on_start=[final(i, i, i * 2.0, t) for i, t in enumerate(texts)])
    app = make_app(session)

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: len(history(app)) == 40)
            view = app.query_one(CaptionHistory)
            await wait_until(pilot, lambda: view.scroll_y == view.max_scroll_y > 0)  # follows the newest
            await pilot.press("home")
            await wait_until(pilot, lambda: view.scroll_y == 0)
            session.emit(final(40, 40, 90.0, "new while reading"))
            await wait_until(pilot, lambda: len(history(app)) == 41)
            assert view.scroll_y == 0  # reading the top: not yanked to the bottom
            # the mouse wheel (Pilot has no public wheel helper)
            await pilot._post_mouse_events([events.MouseScrollDown], view, offset=(5, 5), times=3)
            await wait_until(pilot, lambda: view.scroll_y > 0)
            await pilot.press("end")
            await wait_until(pilot, lambda: view.scroll_y == view.max_scroll_y)
            lines_at_80 = view.virtual_size.height
            await pilot.resize_terminal(40, 24)  # rewrapped to the new width, still following
            await wait_until(pilot, lambda: view.virtual_size.height > lines_at_80)
            await wait_until(pilot, lambda: view.scroll_y == view.max_scroll_y)
            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running)

    run(body)


def test_parse_progress() -> None:
    assert parse_progress("a:  10%|█ | 1/10\rb:  45%|████▌     | 2.03G/4.51G\r") == (
        "b:  45%|████▌     | 2.03G/4.51G",
        45.0,
    )
    assert parse_progress("Loading weights\n") == ("Loading weights", None)
    assert parse_progress("\r\n") is None


# -- snapshots of the main states ----------------------------------------------------------------


def test_snapshot_loading(snap_compare: Callable[..., bool]) -> None:
    gate = threading.Event()

    def factory() -> ScriptedSession:
        sys.stderr.write("model.safetensors:  45%|████▌     | 2.03G/4.51G [00:10<00:12, 200MB/s]\r")
        return ScriptedSession(gate=gate)

    app = CaptionApp(factory, model="zai-org/GLM-ASR-Nano-2512", loading_tick=None, handle_signals=False)

    async def downloading(pilot: Pilot[None]) -> None:
        await wait_until(pilot, lambda: app.query_one(LoadingPanel).percent == 45.0)

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=downloading)
    finally:
        gate.set()


def test_snapshot_listening(snap_compare: Callable[..., bool]) -> None:
    session = ScriptedSession(on_start=[PipelineStats(level_dbfs=-52.0, step_ms=0.0)])
    app = make_app(session)

    async def ready(pilot: Pilot[None]) -> None:
        await wait_until(pilot, lambda: app.state == "live" and app.query_one(StatusBar).stats is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_snapshot_captioning(snap_compare: Callable[..., bool]) -> None:
    info = SessionInfo(
        "Built-in Microphone", 48000, "demo", "cpu", "float32", "ws://127.0.0.1:8765", ("talk.srt",)
    )
    items: list[CaptionEvent | PipelineStats] = [
        final(0, 0, 1.2, "hello please start one two three"),
        final(1, 1, 4.0, "open blue"),
        final(
            2,
            2,
            7.5,
            "三五七九 二四六八 一二三四五六七八九十 三五七九 二四六八 一二三四五六七八九十 三五七九",
        ),
        final(
            3,
            3,
            12.0,
            "a longer caption that wraps onto a second line of the caption area so the hanging indent shows",
        ),
        partial(4, 4, 16.0, "seven four nine", "zero tw"),
        STATS,
    ]
    session = ScriptedSession(info, on_start=items)
    app = make_app(session)

    async def ready(pilot: Pilot[None]) -> None:
        await wait_until(pilot, lambda: app.query_one(CurrentLine).text == "seven four nine zero tw")
        await wait_until(pilot, lambda: app.query_one(StatusBar).stats is not None)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_snapshot_error(snap_compare: Callable[..., bool]) -> None:
    error = ModelLoadError(
        "model zai-org/GLM-ASR-Nano-2512 is not in the local cache and the hub cannot be reached"
    )
    app = make_app(ScriptedSession(fail=error))

    async def ready(pilot: Pilot[None]) -> None:
        await wait_until(pilot, lambda: app.state == "error")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_snapshot_help(snap_compare: Callable[..., bool]) -> None:
    app = make_app(ScriptedSession())

    async def ready(pilot: Pilot[None]) -> None:
        await wait_until(pilot, lambda: app.state == "live")
        await pilot.press("question_mark")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


# -- plain lines ------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_prints_exactly_the_finals() -> None:
    events: list[CaptionEvent | PipelineStats] = [
        partial(0, 0, 1.0, "", "hel"),
        STATS,
        final(1, 0, 1.0, "hello\nworld"),
        final(2, 1, 3.0, "   "),  # no text: no line
        CaptionEvent("status", 3, -1, 0, 0, "", "", "", 4.0, 0.0, status="behind", message="model is behind"),
        final(4, 2, 3725.0, "三五七九"),
    ]
    session = ScriptedSession(on_start=events, end_after_start=True)
    out, err = io.StringIO(), _Tty()
    assert run_plain(lambda: session, out=out, err=err) == 0
    assert out.getvalue() == "[00:00:01] hello world\n[01:02:05] 三五七九\n"
    assert session.stop_calls >= 1
    assert "hel" in err.getvalue() and "model is behind" in err.getvalue()

    quiet = io.StringIO()  # stderr not a terminal: no partials drawn
    run_plain(lambda: ScriptedSession(on_start=events, end_after_start=True), out=io.StringIO(), err=quiet)
    assert "\x1b[K" not in quiet.getvalue() and "hel" not in quiet.getvalue()


def test_plain_sigterm_finishes_the_current_utterance() -> None:
    session = ScriptedSession(on_start=[final(0, 0, 0.0, "first")], on_stop=[final(1, 1, 2.0, "cut short")])

    def kill_when_waiting() -> None:
        assert session.waiting.wait(10)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=kill_when_waiting, daemon=True).start()
    previous = signal.getsignal(signal.SIGTERM)
    out = io.StringIO()
    assert run_plain(lambda: session, out=out, err=io.StringIO()) == 0
    assert out.getvalue() == "[00:00:00] first\n[00:00:02] cut short\n"
    assert signal.getsignal(signal.SIGTERM) == previous


def test_plain_start_error_propagates_and_stops() -> None:
    session = ScriptedSession(fail=DeviceError("no audio input device found"))
    with pytest.raises(DeviceError):
        run_plain(lambda: session, out=io.StringIO(), err=io.StringIO())
    assert session.stop_calls == 1


def test_plain_helpers() -> None:
    assert final_line(final(0, 0, 59.9, " a  b ")) == "[00:00:59] a b"
    assert tail_to_width("abc三五七九", 6) == "…七九"
    assert tail_to_width("abc", 10) == "abc"
    assert not use_tui(no_tui=True)
    assert not use_tui(stdin=io.StringIO(), stdout=_Tty())


# -- end to end: the real LivePipeline on a file --------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
DEMO_AUDIO = ROOT / "assets" / "demo.wav"


@pytest.fixture
def live_model() -> str:
    """The demo model, or another model directory named by GLMASR_TUI_TEST_MODEL."""
    model = os.environ.get("GLMASR_TUI_TEST_MODEL", "demo")
    if model == "demo" and not (ROOT / "assets" / "demo-model" / "config.json").exists():
        pytest.skip(
            "the demo model is missing from assets/demo-model (train it: scripts/train_demo_model.py)"
        )
    return model


def _settings(model: str, realtime: bool, transcripts: tuple[str, ...]) -> object:
    from glmasr_live.config import PipelineSettings

    return PipelineSettings(
        input=str(DEMO_AUDIO), realtime=realtime, model=model, device="cpu", ws=None, transcripts=transcripts
    )


@pytest.mark.slow
def test_app_with_the_live_pipeline(tmp_path: Path, live_model: str) -> None:
    from glmasr_live.pipeline import LivePipeline

    out = tmp_path / "out.txt"
    settings = _settings(live_model, True, (str(out),))
    app = CaptionApp(
        lambda: LivePipeline(settings),  # type: ignore[arg-type]
        model=live_model,
        loading_tick=None,
        handle_signals=False,
    )

    async def body() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: app.state == "live", timeout=120)
            await wait_until(pilot, lambda: app.finals, timeout=60)
            assert history(app)[0] == app.finals[0].text
            assert app.query_one(StatusBar).stats is not None
            assert "demo.wav" in str(app.query_one("#input").render())
            session = app.session
            assert session is not None

            await pilot.press("space")
            assert session.paused and app.state == "paused"
            await pilot.press("space")
            assert not session.paused and app.state == "live"
            await pilot.press("f")
            assert not app.query_one(CurrentLine).display
            await pilot.press("f", "question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape", "s")  # a transcript is configured: no dialog
            assert not isinstance(app.screen, SaveDialog)
            await pilot.press("c")
            assert history(app) == []

            await pilot.press("q")
            await wait_until(pilot, lambda: not app.is_running, timeout=60)

    run(body)
    assert app.return_code == 0 and app.error is None
    texts = [" ".join(e.text.split()) for e in app.finals]
    assert out.read_text(encoding="utf-8").splitlines() == texts  # the flushed last final included


@pytest.mark.slow
def test_plain_with_the_live_pipeline(tmp_path: Path, live_model: str) -> None:
    from glmasr_live.pipeline import LivePipeline

    journal = tmp_path / "out.jsonl"
    settings = _settings(live_model, False, (str(journal),))
    out = io.StringIO()
    assert run_plain(lambda: LivePipeline(settings), out=out, err=io.StringIO()) == 0  # type: ignore[arg-type]
    lines = out.getvalue().splitlines()
    finals = [CaptionEvent.from_json(line) for line in journal.read_text(encoding="utf-8").splitlines()]
    expected = [line for line in map(final_line, finals) if line is not None]
    assert lines == expected and lines
