#!/usr/bin/env python3
"""The prepared GPU check: full-size GLM-ASR, random weights, bfloat16, stage timings.

    python scripts/gpu_check.py                       # on a CUDA machine: table + gpu-check.json
    python scripts/gpu_check.py --model tiny --device cpu --dtype float32   # smoke test anywhere

Needs torch, transformers and this repository (run from its root); finishes in a few minutes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=["full", "tiny"], default="full")
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, default=Path("gpu-check.json"))
    args = p.parse_args()
    from glmasr_live.asr import gpucheck

    result = gpucheck.run(args.model, args.device, args.dtype, args.repeats)
    print(gpucheck.format_table(result))
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
