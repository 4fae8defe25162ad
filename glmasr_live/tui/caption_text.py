"""How one caption reads on screen: its start time, then its text with a hanging indent.

Wrapping goes by terminal cells (Rich's ``cell_len``), so CJK characters, two cells wide, fill
a line exactly and are never cut in half; a run of them with no spaces folds at the margin.
"""

from __future__ import annotations

from rich.console import Console
from rich.style import Style
from rich.text import Text

from glmasr_live.events import format_clock, join_text

CLOCK_WIDTH = 10
"""``HH:MM:SS`` and two spaces."""
NARROW = 30
"""Below this width the time column is left out: the text needs the room."""


def caption_body(committed: str, tentative: str, tentative_style: Style | str = "dim") -> Text:
    """Committed text in the normal style, tentative text after it in ``tentative_style``.

    The separator is the one :func:`join_text` puts (none next to CJK), so the line reads the
    same as the final that will replace it.
    """
    committed, tentative = " ".join(committed.split()), " ".join(tentative.split())
    joined = join_text(committed, tentative)
    sep = joined[len(committed) : len(joined) - len(tentative)]
    body = Text(committed + sep, end="")
    body.append(tentative, style=tentative_style)
    return body


def wrap_caption(
    console: Console,
    start: float,
    body: Text,
    width: int,
    clock_style: Style | str = "dim",
) -> list[Text]:
    """Lines of exactly ``width`` cells: the clock on the first, the text wrapped under it."""
    width = max(1, width)
    indent = CLOCK_WIDTH if width >= NARROW else 0
    wrapped = body.wrap(console, width - indent, overflow="fold") if body.plain else [Text("")]
    lines: list[Text] = []
    for i, piece in enumerate(wrapped):
        piece.rstrip()
        prefix = Text(format_clock(start).ljust(indent) if i == 0 else " " * indent, style=clock_style)
        if not indent:
            prefix = Text("")
        line = Text.assemble(prefix, piece, end="", no_wrap=True, overflow="crop")
        line.truncate(width, overflow="crop", pad=True)
        lines.append(line)
    return lines
