"""One module per subcommand. Each exposes ``register(subparsers)`` and keeps heavy imports
(torch, transformers, textual, sounddevice) inside its ``run`` function so ``--help`` is fast."""

from __future__ import annotations

# The order is the order in --help. A module that does not exist yet is skipped.
COMMANDS = (
    "transcribe",
    "demo",
    "devices",
    "vad",
    "eval",
    "bench",
    "bench_offline",
    "bench_streams",
    "serve",
)
