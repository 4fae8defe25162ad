"""Model names and decoder defaults that the CLI needs without importing torch."""

from __future__ import annotations

DEFAULT_MODEL = "zai-org/GLM-ASR-Nano-2512"

CONTEXT_S = 10.0
"""Closed audio (seconds) the streaming decoder keeps in its prompt before settled text leaves it."""
CONTEXT_MAX_S = 3600.0
"""Largest ``--context`` accepted (0 keeps the whole utterance in the prompt)."""
