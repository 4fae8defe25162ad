"""The finals so far, each with its start time; scrolls with the mouse wheel and the keys.

A Line API widget: finals are wrapped once into strips (again only when the width changes), so a
long session costs no widget per line and drawing is a list lookup. New finals keep the view at
the bottom unless the user scrolled up to read; scrolling back to the bottom follows again.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual.events import Resize
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from glmasr_live.tui.caption_text import caption_body, wrap_caption

CLOCK_STYLE = Style(dim=True)
MAX_FINALS = 2000
"""Finals kept on screen; older ones are still in the transcript files."""


@dataclass(frozen=True, slots=True)
class _Entry:
    start: float
    text: str
    lines: int  # strips at the current width


class CaptionHistory(ScrollView, can_focus=True):
    """Finals, oldest at the top. Keys (from ScrollableContainer): up/down, page up/down, home/end."""

    COMPONENT_CLASSES = {"caption-history--placeholder"}
    DEFAULT_CSS = """
    CaptionHistory {
        height: 1fr;
        padding: 0 1;
        scrollbar-size-vertical: 1;
        overflow-x: hidden;
    }
    CaptionHistory > .caption-history--placeholder { color: $text-muted; text-style: italic; }
    """

    def __init__(self, placeholder: str = "", *, max_finals: int = MAX_FINALS, id: str | None = None) -> None:
        super().__init__(id=id)
        self.placeholder = placeholder
        self.max_finals = max_finals
        self._entries: list[_Entry] = []
        self._strips: list[Strip] = []
        self._wrap_width = 0
        self._follow = True
        """Keep the newest final in view; off while the user reads further up."""
        self._end_pending = False

    @property
    def texts(self) -> list[str]:
        """The finals shown, oldest first (for tests and the help of a clear)."""
        return [e.text for e in self._entries]

    def set_placeholder(self, text: str) -> None:
        self.placeholder = text
        if not self._entries:
            self.refresh()

    def add_final(self, start: float, text: str) -> None:
        strips = self._render_entry(start, text) if self._wrap_width else []
        self._entries.append(_Entry(start, text, len(strips)))
        self._strips.extend(strips)
        if len(self._entries) > self.max_finals:
            dropped = self._entries.pop(0)
            del self._strips[: dropped.lines]
        self._update_size()

    def clear(self) -> None:
        self._entries.clear()
        self._strips.clear()
        self._follow = True
        self._update_size()

    def _render_entry(self, start: float, text: str) -> list[Strip]:
        console = self.app.console
        lines = wrap_caption(
            console, start, caption_body(text, ""), self._wrap_width, clock_style=CLOCK_STYLE
        )
        return [Strip(line.render(console), self._wrap_width) for line in lines]

    def _rewrap(self) -> None:
        self._strips = []
        entries = self._entries
        self._entries = []
        for e in entries:
            strips = self._render_entry(e.start, e.text)
            self._entries.append(_Entry(e.start, e.text, len(strips)))
            self._strips.extend(strips)

    def _update_size(self) -> None:
        self.virtual_size = Size(self._wrap_width, len(self._strips))
        if self._follow and not self._end_pending:
            # After the refresh (the scrollbar the new lines may need exists then), and once
            # for a burst of finals: a pending jump must not undo the user's scrolling.
            self._end_pending = True
            self.call_after_refresh(self._scroll_to_newest)
        self.refresh()

    def _scroll_to_newest(self) -> None:
        self._end_pending = False
        if self._follow:
            self.scroll_to(y=self.max_scroll_y, animate=False, force=True, immediate=True)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._follow = new_value >= self.max_scroll_y

    def watch_scroll_target_y(self, new_value: float) -> None:
        # An animated scroll (Home, the wheel) sets its target at once and moves scroll_y a
        # frame later; a jump to the newest in between would cancel the user's scroll.
        if new_value < self.max_scroll_y:
            self._follow = False

    def on_resize(self, event: Resize) -> None:
        width = self.scrollable_content_region.width
        if width and width != self._wrap_width:
            self._wrap_width = width
            self._rewrap()
            self._update_size()

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = self.scroll_offset.y + y
        if not self._entries:
            return self._placeholder_line(y, width)
        if index >= len(self._strips):
            return Strip.blank(width, self.rich_style)
        return self._strips[index].crop_extend(0, width, self.rich_style).apply_style(self.rich_style)

    def _placeholder_line(self, y: int, width: int) -> Strip:
        if y != 0 or not self.placeholder:
            return Strip.blank(width, self.rich_style)
        style = self.get_component_rich_style("caption-history--placeholder")
        text = Text(self.placeholder, style=style, no_wrap=True, overflow="ellipsis")
        text.truncate(width, overflow="ellipsis", pad=True)
        return Strip(text.render(self.app.console), width).apply_style(self.rich_style)
