"""Input level in dBFS as a bar, with the VAD state and the gain the segmenter applies."""

from __future__ import annotations

from rich.console import RenderableType
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

FLOOR_DBFS = -60.0
"""The bar's left end: room noise in a quiet room sits around -60..-50 dBFS."""
BAR_CELLS = 12
_EIGHTHS = " ▏▎▍▌▋▊▉"


def level_bar(dbfs: float, cells: int = BAR_CELLS) -> str:
    """``cells`` characters filled in eighths from FLOOR_DBFS (empty) to 0 dBFS (full)."""
    fraction = min(1.0, max(0.0, (dbfs - FLOOR_DBFS) / -FLOOR_DBFS))
    eighths = round(fraction * cells * 8)
    full, rest = divmod(eighths, 8)
    bar = "█" * full + (_EIGHTHS[rest] if rest and full < cells else "")
    return bar.ljust(cells)


class LevelMeter(Widget):
    """``▕██████      ▏ -23 dBFS speech +6 dB``; green while the VAD hears speech."""

    COMPONENT_CLASSES = {"level-meter--speech", "level-meter--silence", "level-meter--clip"}
    DEFAULT_CSS = """
    LevelMeter { width: 38; height: 1; }
    LevelMeter > .level-meter--speech { color: $success; }
    LevelMeter > .level-meter--silence { color: $text-muted; }
    LevelMeter > .level-meter--clip { color: $error; }
    """

    level_dbfs: reactive[float] = reactive(FLOOR_DBFS * 2)
    speech: reactive[bool] = reactive(False)
    gain_db: reactive[float] = reactive(0.0)
    active: reactive[bool] = reactive(False)
    """False until the first stats arrive (and while paused): the meter shows dashes."""

    def update_level(self, level_dbfs: float, speech: bool, gain_db: float, active: bool = True) -> None:
        self.level_dbfs = level_dbfs
        self.speech = speech
        self.gain_db = gain_db
        self.active = active

    def render(self) -> RenderableType:
        speech = self.get_component_rich_style("level-meter--speech")
        silence = self.get_component_rich_style("level-meter--silence")
        clip = self.get_component_rich_style("level-meter--clip")
        if not self.active:
            return Text.assemble("▕", (" " * BAR_CELLS, silence), "▏", ("   -- dBFS", silence))
        level = max(self.level_dbfs, -99.0)
        bar_style = clip if level > -1.0 else (speech if self.speech else silence)
        return Text.assemble(
            "▕",
            (level_bar(level), bar_style),
            "▏",
            f" {level:4.0f} dBFS ",
            ("speech " if self.speech else "silence", speech if self.speech else silence),
            f" {self.gain_db:+.0f} dB",
            no_wrap=True,
            overflow="crop",
        )
