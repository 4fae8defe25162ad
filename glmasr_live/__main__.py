from __future__ import annotations

import sys

from glmasr_live.cli import main

sys.exit(main())
