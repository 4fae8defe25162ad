from __future__ import annotations

from glmasr_live.cli import entry

entry()
