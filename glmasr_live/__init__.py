"""glmasr-live: real-time captions from live speech with GLM-ASR-Nano-2512."""

from __future__ import annotations

__version__ = "0.1.0"
