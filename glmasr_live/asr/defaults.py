"""Model names and decoder defaults that the CLI needs without importing torch."""

from __future__ import annotations

from glmasr_live.option_table import CONTEXT_MAX_S, CONTEXT_S  # the one source of both

__all__ = ["CONTEXT_MAX_S", "CONTEXT_S", "DEFAULT_MODEL"]

DEFAULT_MODEL = "zai-org/GLM-ASR-Nano-2512"
