#!/usr/bin/env python
"""Entry point: the logic lives in glmasr_live.devtools.broadcast_bench (see its docstring)."""

from glmasr_live.devtools.broadcast_bench import main

if __name__ == "__main__":
    raise SystemExit(main())
