#!/usr/bin/env python
"""Entry point: the logic lives in glmasr_live.devtools.training (its cli module's docstring,
shown by --help, describes the recipe)."""

from glmasr_live.devtools.training.cli import main

if __name__ == "__main__":
    main()
