"""Model names that the CLI needs without importing torch."""

from __future__ import annotations

DEFAULT_MODEL = "zai-org/GLM-ASR-Nano-2512"
