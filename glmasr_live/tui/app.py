"""The caption terminal UI: ``run_app(make_session, title=...)``.

Start-up: the app shows the loading panel at once and calls ``make_session()`` and
``session.start()`` on a thread (the model takes seconds to minutes to load); the session's
listener then posts every caption and stats record to the app (``post_message`` is the
thread-safe way in). ``q``, Ctrl-C, SIGTERM and SIGHUP all stop the session on a thread
(the current utterance is finished and written) and exit once ``stop()`` returns.

The start and stop threads are plain daemon threads rather than Textual thread workers:
those run in asyncio's default executor, which ``asyncio.run`` joins at exit, so quitting
during a long model download would hang until the download ended.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import ContentSwitcher, Footer

from glmasr_live.errors import GlmAsrLiveError
from glmasr_live.events import CaptionEvent, PipelineStats
from glmasr_live.session import RunnableSession, SessionFactory
from glmasr_live.tui.caption_history import CaptionHistory
from glmasr_live.tui.current_line import CurrentLine
from glmasr_live.tui.error_panel import ErrorPanel, error_title, fix_for
from glmasr_live.tui.help_screen import HelpScreen
from glmasr_live.tui.loading_panel import LoadingPanel
from glmasr_live.tui.log_routing import route_logging
from glmasr_live.tui.messages import (
    CaptionReceived,
    InputEnded,
    LogLine,
    SessionFailed,
    SessionStarted,
    SessionStopped,
    StatsReceived,
    TranscriptSaved,
    TranscriptSaveFailed,
)
from glmasr_live.tui.save_dialog import SaveDialog
from glmasr_live.tui.status_bar import StatusBar

log = logging.getLogger(__name__)

QUIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def exit_code_for(error: BaseException) -> int:
    return error.exit_code if isinstance(error, GlmAsrLiveError) else 1


class CaptionApp(App[None]):
    """Live captions: history, the current line, status, keys."""

    TITLE = "glmasr-live"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("space", "toggle_pause", "Pause"),
        Binding("c", "clear", "Clear"),
        Binding("s", "save", "Save"),
        Binding("f", "finals_only", "Finals only"),
        Binding("q", "quit_gracefully", "Quit"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+c", "quit_gracefully", "Quit", show=False, priority=True),
    ]
    CSS = """
    #main { height: 1fr; }
    #captions { height: 1fr; }
    """

    def __init__(
        self,
        make_session: SessionFactory,
        *,
        title: str = "glmasr-live",
        model: str | None = None,
        loading_tick: float | None = 1.0,
        handle_signals: bool = True,
    ) -> None:
        super().__init__()
        self.title = title
        self.make_session = make_session
        self.model = model
        self.loading_tick = loading_tick
        self.handle_signals = handle_signals
        self.session: RunnableSession | None = None
        self.state = "loading"
        self.error: BaseException | None = None
        """Why the session could not start, failed or could not stop (run_app prints it)."""
        self.finals: list[CaptionEvent] = []
        self.saved_path: Path | None = None
        self.finals_only = False
        self._last_partial_seq = -1
        self._last_final_utterance = -1
        self._quit = threading.Event()
        self._quit_presses = 0
        self.created_session: RunnableSession | None = None
        """Set on the start thread once start() returned (before the app hears of it)."""
        self.stop_started = False
        """stop() was called (run_app calls it if the app ended any other way)."""
        self._stop_lock = threading.Lock()
        self._signals: list[signal.Signals] = []

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with ContentSwitcher(initial="loading", id="main"):
            yield LoadingPanel(self.model, tick=self.loading_tick, id="loading")
            yield ErrorPanel(id="error")
            with Vertical(id="captions"):
                yield CaptionHistory("Listening… captions appear here.", id="history")
                yield CurrentLine(id="current")
        yield StatusBar(id="status")
        yield Footer()

    def on_mount(self) -> None:
        if self.handle_signals:
            self._install_signal_handlers()
        self._spawn("session-start", self._start_session)

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in QUIT_SIGNALS:
            with suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.action_quit_gracefully)
                self._signals.append(sig)

    def claim_stop(self) -> bool:
        """True for the one caller (key, start thread or run_app) that is to call stop()."""
        with self._stop_lock:
            if self.stop_started:
                return False
            self.stop_started = True
            return True

    def _set_state(self, state: str) -> None:
        self.state = state
        self.query_one(StatusBar).set_state(state)

    # -- session threads ---------------------------------------------------------------------

    @staticmethod
    def _spawn(name: str, target: Callable[[], None]) -> None:
        threading.Thread(target=target, name=name, daemon=True).start()

    def _listener(self, item: CaptionEvent | PipelineStats) -> None:
        """Called on a pipeline thread."""
        if isinstance(item, CaptionEvent):
            self.post_message(CaptionReceived(item))
        else:
            self.post_message(StatsReceived(item))

    def _start_session(self) -> None:
        """Runs on the session-start thread: load, start, then wait for the input to end."""
        session: RunnableSession | None = None
        try:
            session = self.make_session()
            session.subscribe(self._listener)  # before start: no early caption is missed
            session.start()
        except Exception as e:  # shown on the error panel; a bug shows its type as well
            if not isinstance(e, GlmAsrLiveError):
                log.exception("session start failed")
            if session is not None:
                with suppress(Exception):
                    session.stop()  # whatever start() got going (threads, sockets) is let go
            self.post_message(SessionFailed(e))
            return
        self.created_session = session
        if self._quit.is_set():  # the app closed while the model loaded
            if self.claim_stop():
                session.stop()
            return
        self.post_message(SessionStarted(session))
        try:
            ended = session.wait(None)
        except Exception as e:
            self.post_message(SessionFailed(e))
            return
        if ended:
            self.post_message(InputEnded())

    def _stop_session(self) -> None:
        """Runs on the session-stop thread."""
        assert self.session is not None
        try:
            self.session.stop()
        except Exception as e:
            self.post_message(SessionStopped(e))
            return
        self.post_message(SessionStopped())

    # -- messages from the threads -------------------------------------------------------------

    def on_session_started(self, message: SessionStarted) -> None:
        self.session = message.session
        self.query_one(LoadingPanel).stop_capture()
        info = message.session.info
        self.query_one(StatusBar).set_info(info)
        if info.input_name:
            self.query_one(CaptionHistory).set_placeholder(f"Listening to {info.input_name}…")
        self.query_one(ContentSwitcher).current = "captions"
        self.query_one(CaptionHistory).focus()
        if self.state == "loading":
            self._set_state("live")

    def on_session_failed(self, message: SessionFailed) -> None:
        self.error = message.error
        if self.session is None:
            self.query_one(LoadingPanel).stop_capture()
            self.query_one(ErrorPanel).show_error(message.error)
            self.query_one(ContentSwitcher).current = "error"
        else:
            fix = fix_for(message.error)
            self.notify(f"{error_title(message.error)}\n{fix}".strip(), severity="error", timeout=30)
        self._set_state("error")

    def on_input_ended(self, message: InputEnded) -> None:
        if self.state in ("live", "paused"):
            self._set_state("ended")
            if not self.finals:
                self.query_one(CaptionHistory).set_placeholder("The input ended; nothing was heard.")
            self.notify("The input ended. Press q to quit.", timeout=10)

    def on_session_stopped(self, message: SessionStopped) -> None:
        if message.error is not None:
            self.error = message.error
        self.exit(return_code=exit_code_for(self.error) if self.error is not None else 0)

    def on_caption_received(self, message: CaptionReceived) -> None:
        event = message.event
        current = self.query_one(CurrentLine)
        if event.type == "status":
            self.notify(event.message or event.status or "status", severity="warning", timeout=8)
        elif event.type == "partial":
            if event.seq < self._last_partial_seq or event.utterance <= self._last_final_utterance:
                return  # stale: a newer partial, or the utterance's final, is already shown
            self._last_partial_seq = event.seq
            current.show(event)
        else:
            self._last_final_utterance = max(self._last_final_utterance, event.utterance)
            if current.caption is None or current.caption.utterance <= event.utterance:
                current.clear()
            if event.text.strip():
                self.finals.append(event)
                self.query_one(CaptionHistory).add_final(event.start, event.text)

    def on_stats_received(self, message: StatsReceived) -> None:
        self.query_one(StatusBar).set_stats(message.stats)

    def on_log_line(self, message: LogLine) -> None:
        if self.state == "loading" and message.level >= logging.INFO:
            self.query_one(LoadingPanel).set_stage(message.text)
        if message.level >= logging.WARNING:
            if message.level >= logging.ERROR:
                self.notify(message.text, severity="error", timeout=10)
            else:
                self.notify(message.text, severity="warning", timeout=10)

    def on_transcript_saved(self, message: TranscriptSaved) -> None:
        self.saved_path = message.path
        self.query_one(StatusBar).set_transcript(message.path)
        self.notify(f"Transcript saved: {message.path}", timeout=5)

    def on_transcript_save_failed(self, message: TranscriptSaveFailed) -> None:
        self.notify(f"Cannot save {message.path}: {message.error}", severity="error", timeout=15)

    # -- keys --------------------------------------------------------------------------------

    def _session_for(self, what: str) -> RunnableSession | None:
        if self.session is None or self.state in ("stopping", "error"):
            self.notify(f"Cannot {what} now: no session is running.", severity="warning", timeout=4)
            return None
        return self.session

    def action_toggle_pause(self) -> None:
        session = self._session_for("pause")
        if session is None or self.state == "ended":
            return
        paused = not session.paused
        session.set_paused(paused)
        self._set_state("paused" if paused else "live")

    def action_clear(self) -> None:
        self.query_one(CaptionHistory).clear()
        self.query_one(CurrentLine).clear()

    def action_finals_only(self) -> None:
        self.finals_only = not self.finals_only
        self.query_one(CurrentLine).display = not self.finals_only
        self.query_one(StatusBar).set_finals_only(self.finals_only)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_save(self) -> None:
        session = self._session_for("save")
        if session is None:
            return
        if self.saved_path is not None:
            self.save_transcript(self.saved_path)
            return
        configured = session.info.transcripts
        if configured:
            # The session's transcript writer rewrites these after every final (and keeps
            # earlier sessions continued in them): writing them from here could only lose that.
            names = ", ".join(configured)
            self.notify(f"The transcript is up to date: {names} (written after every final).", timeout=6)
        elif not isinstance(self.screen, SaveDialog):
            self.push_screen(SaveDialog(), self._save_chosen)

    def _save_chosen(self, path: Path | None) -> None:
        if path is not None:
            self.save_transcript(path)

    @work(thread=True, exclusive=True, group="save", exit_on_error=False)
    def save_transcript(self, path: Path) -> None:
        """Disk I/O (fsync): on a worker thread, never on the event loop."""
        assert self.session is not None
        try:
            written = self.session.save_transcript(path)
        except (GlmAsrLiveError, OSError) as e:
            self.post_message(TranscriptSaveFailed(path, str(e)))
            return
        self.post_message(TranscriptSaved(Path(written)))

    def closed(self) -> None:
        """The app has ended: a session that finishes starting now is stopped at once."""
        self._quit.set()

    def action_quit_gracefully(self) -> None:
        if self.session is None:  # still loading, or it never started: nothing to flush
            self._quit.set()
            self.exit(return_code=exit_code_for(self.error) if self.error is not None else 0)
            return
        self._quit_presses += 1
        if self._quit_presses == 1 and self.claim_stop():
            self._set_state("stopping")
            self.notify("Finishing the current utterance…", timeout=30)
            self._spawn("session-stop", self._stop_session)
        elif self._quit_presses == 2:
            self.notify("Still finishing the last utterance; quit once more to leave without it.")
        else:
            self.exit(return_code=1)


# -- entry point -----------------------------------------------------------------------------


def run_app(make_session: SessionFactory, *, title: str, model: str | None = None) -> int:
    """Run the caption UI until q / Ctrl-C / SIGTERM; return the exit code.

    ``make_session()`` may be slow (it runs on a thread, under the loading panel); the app calls
    ``subscribe``, ``start`` and ``wait`` on what it returns, and ``stop`` when leaving.
    A start-up error is shown with its fix, and printed again on stderr after the app closes.
    """
    app = CaptionApp(make_session, title=title, model=model)
    previous = {sig: signal.getsignal(sig) for sig in QUIT_SIGNALS}
    try:
        with route_logging(app):
            app.run()
    finally:
        for sig, handler in previous.items():
            with suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        app.closed()
        session = app.session or app.created_session
        if session is not None and app.claim_stop():
            session.stop()  # the app closed some other way: still flush the last final
    if app.error is not None:
        print(f"glmasr-live: error: {error_title(app.error)}", file=sys.stderr)
        fix = fix_for(app.error)
        if fix:
            print(f"glmasr-live: {fix}", file=sys.stderr)
    elif app.session is not None:
        written = [app.saved_path] if app.saved_path else []
        for path in [*app.session.info.transcripts, *written]:
            print(f"transcript: {path}", file=sys.stderr)
    return app.return_code or 0
