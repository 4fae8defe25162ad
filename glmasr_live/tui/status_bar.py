"""Three lines about the running session, always visible above the key hints.

``LIVE │ input (rate) │ level meter``, then the model's speed and the caption latency, then
where captions go (websocket, transcript). Every field is a plain string built by a function
here, so tests can check the wording without a screen.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from glmasr_live.events import SAMPLE_RATE, PipelineStats, SessionInfo
from glmasr_live.tui.level_meter import LevelMeter

STATES = {
    "loading": "LOADING",
    "live": "● LIVE",
    "paused": "❚❚ PAUSED",
    "stopping": "STOPPING",
    "ended": "■ ENDED",
    "error": "ERROR",
}
"""state -> badge; the badge's colour comes from the CSS class ``-<state>``."""


def input_text(info: SessionInfo | None) -> str:
    if info is None:
        return "input: …"
    rate = f"{info.input_rate / 1000:g} kHz" if info.input_rate else "?"
    return f"input: {info.input_name or 'default'} ({rate})"


def engine_text(info: SessionInfo | None, stats: PipelineStats | None) -> str:
    parts = []
    if stats is not None:
        parts.append(f"step {stats.step_ms:.0f} ms  RTF {stats.rtf:.2f}  latency {stats.latency_s:.1f} s")
        dropped = stats.dropped_samples / SAMPLE_RATE
        lost = f"dropped {dropped:.1f} s" if stats.dropped_samples else "dropped 0"
        if stats.skipped_partials:
            lost += f" ({stats.skipped_partials} partials skipped)"
        parts.append(lost)
    else:
        parts.append("step –  RTF –  latency –")
    if info is not None:
        name = info.model.rstrip("/").rsplit("/", 1)[-1] or "?"
        parts.append(f"{name} {info.device.upper() if info.device == 'cpu' else info.device} {info.dtype}")
    return " │ ".join(parts)


def outputs_text(info: SessionInfo | None, stats: PipelineStats | None, transcript: Path | None) -> str:
    if info is None:
        return ""
    if info.ws_url:
        n = stats.subscribers if stats is not None else 0
        ws = f"{info.ws_url} ({n} subscriber{'' if n == 1 else 's'})"
    else:
        ws = "websocket off"
    paths = [str(transcript)] if transcript is not None else list(info.transcripts)
    if paths:
        more = f" +{len(paths) - 1}" if len(paths) > 1 else ""
        out = f"transcript: {paths[0]}{more}"
    else:
        out = "transcript: none (s saves)"
    return f"{ws} │ {out}"


class StatusBar(Vertical):
    """The session's state, input, level, speed, latency, losses and outputs."""

    DEFAULT_CSS = """
    StatusBar {
        height: 3;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    StatusBar Horizontal { height: 1; }
    StatusBar Static {
        text-wrap: nowrap;
        text-overflow: ellipsis;
        height: 1;
    }
    StatusBar #state { width: auto; margin-right: 1; text-style: bold; }
    StatusBar #input { width: 1fr; }
    StatusBar #extra { width: auto; color: $warning; }
    StatusBar #engine.-lossy { color: $warning; }
    StatusBar #state.-live { color: $success; }
    StatusBar #state.-loading, StatusBar #state.-paused, StatusBar #state.-stopping { color: $warning; }
    StatusBar #state.-ended { color: $primary; }
    StatusBar #state.-error { color: $error; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.info: SessionInfo | None = None
        self.stats: PipelineStats | None = None
        self.transcript: Path | None = None
        self.state = "loading"
        self.finals_only = False

    def compose(self) -> ComposeResult:
        with Horizontal():
            yield Static(id="state")
            yield Static(input_text(None), id="input", markup=False)
            yield LevelMeter()
        yield Static(engine_text(None, None), id="engine", markup=False)
        with Horizontal():
            yield Static("", id="outputs", markup=False)
            yield Static("", id="extra")

    def on_mount(self) -> None:
        self._refresh_all()

    def set_state(self, state: str) -> None:
        self.state = state
        self._refresh_state()

    def set_info(self, info: SessionInfo) -> None:
        self.info = info
        self._refresh_all()

    def set_stats(self, stats: PipelineStats) -> None:
        self.stats = stats
        meter = self.query_one(LevelMeter)
        meter.update_level(stats.level_dbfs, stats.speech, stats.gain_db, active=not stats.paused)
        self.query_one("#engine", Static).update(engine_text(self.info, stats))
        self.query_one("#outputs", Static).update(outputs_text(self.info, stats, self.transcript))
        self.query_one("#engine", Static).set_class(bool(stats.dropped_samples), "-lossy")

    def set_transcript(self, path: Path) -> None:
        self.transcript = path
        self.query_one("#outputs", Static).update(outputs_text(self.info, self.stats, path))

    def set_finals_only(self, on: bool) -> None:
        self.finals_only = on
        self.query_one("#extra", Static).update(" finals only" if on else "")

    def _refresh_state(self) -> None:
        badge = self.query_one("#state", Static)
        badge.update(STATES.get(self.state, self.state.upper()))
        badge.set_classes(f"-{self.state}")

    def _refresh_all(self) -> None:
        self._refresh_state()
        self.query_one("#input", Static).update(input_text(self.info))
        self.query_one("#engine", Static).update(engine_text(self.info, self.stats))
        self.query_one("#outputs", Static).update(outputs_text(self.info, self.stats, self.transcript))
