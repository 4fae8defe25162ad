"""Log records while the caption app owns the terminal: into the app, not onto its screen.

The root logger's handlers (``logging.basicConfig`` writes to the real stderr, which Textual
draws on) are set aside while the app runs; records go to the app as :class:`LogLine`
messages instead and are printed by the original handlers once the app has closed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from textual.app import App

from glmasr_live.tui.messages import LogLine


class _AppLogHandler(logging.Handler):
    """Routes log records into the app while it owns the terminal; keeps them for afterwards."""

    def __init__(self, app: App[None]) -> None:
        super().__init__(logging.DEBUG)
        self.app = app
        self.kept: deque[logging.LogRecord] = deque(maxlen=1000)

    def emit(self, record: logging.LogRecord) -> None:
        self.kept.append(record)
        if self.app.is_running and record.levelno >= logging.INFO:
            self.app.post_message(LogLine(record.levelno, record.getMessage()))


@contextmanager
def route_logging(app: App[None]) -> Iterator[_AppLogHandler]:
    """While the app runs, log records go to it, not to a stderr it draws on.

    ``glmasr_live`` INFO lines become the loading panel's step; warnings become notifications.
    Afterwards the records the original handlers would have printed are printed by them.
    """
    root = logging.getLogger()
    package = logging.getLogger("glmasr_live")
    saved_handlers, saved_level = root.handlers[:], package.level
    shown_level = package.getEffectiveLevel()
    handler = _AppLogHandler(app)
    root.handlers = [handler]
    if shown_level > logging.INFO:
        package.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.handlers = saved_handlers
        package.setLevel(saved_level)
        for record in handler.kept:
            if record.name.startswith("glmasr_live") and record.levelno < shown_level:
                continue
            for h in saved_handlers:
                if record.levelno >= h.level:
                    h.handle(record)
