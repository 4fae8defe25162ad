"""The utterance being spoken: committed text in the normal colour, tentative text dimmed.

Each partial replaces the line in place (only this widget repaints, its height never changes,
so nothing else on screen moves). A long utterance shows its last lines: live captions are read
at the end.
"""

from __future__ import annotations

from rich.console import RenderableType
from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from glmasr_live.events import CaptionEvent
from glmasr_live.tui.caption_text import caption_body, wrap_caption

LINES = 3


class CurrentLine(Widget):
    """The latest partial caption, or nothing between utterances."""

    COMPONENT_CLASSES = {"current-line--tentative", "current-line--time"}
    DEFAULT_CSS = f"""
    CurrentLine {{
        height: {LINES};
        padding: 0 1;
        background: $boost;
    }}
    CurrentLine > .current-line--tentative {{ color: $text-muted; text-style: italic; }}
    CurrentLine > .current-line--time {{ color: $text-muted; }}
    """

    caption: reactive[CaptionEvent | None] = reactive(None)

    @property
    def text(self) -> str:
        """What the line reads now (empty between utterances)."""
        return self.caption.text if self.caption is not None else ""

    def show(self, event: CaptionEvent) -> None:
        self.caption = event

    def clear(self) -> None:
        self.caption = None

    def render(self) -> RenderableType:
        event = self.caption
        width = self.content_size.width
        if event is None or not width or not (event.committed or event.tentative):
            return Text("")
        tentative: Style = self.get_component_rich_style("current-line--tentative")
        clock: Style = self.get_component_rich_style("current-line--time")
        body = caption_body(event.committed, event.tentative, tentative_style=tentative)
        lines = wrap_caption(self.app.console, event.start, body, width, clock_style=clock)
        return Text("\n", end="").join(lines[-LINES:])
