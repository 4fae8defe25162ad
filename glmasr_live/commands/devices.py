"""``glmasr-live devices``: the audio inputs PortAudio sees, to pick one with --input-device."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from glmasr_live.audio.devices import InputDevice


def add_input_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--input-device NAME|INDEX`` (the live command shares it)."""
    parser.add_argument(
        "--input-device",
        metavar="NAME|INDEX",
        default=None,
        help="microphone to capture from: an index or part of a name, case-insensitive "
        "(see `glmasr-live devices`; default: the system's default input)",
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "devices",
        help="list audio input devices",
        description="List the audio input devices PortAudio sees: index, name, host API, "
        "input channels and default sample rate; * marks the default input. Pick one for live "
        "captions with --input-device NAME|INDEX.",
    )
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from glmasr_live.audio.devices import find_input_device, list_input_devices

    devices = list_input_devices()
    if args.json:
        print(json.dumps([d.to_dict() for d in devices], indent=2))
        return 0
    if not devices:
        find_input_device(None, devices)  # raises DeviceError: says why and what to do
    print(format_devices(devices))
    return 0


def format_devices(devices: Sequence[InputDevice]) -> str:
    """A table, one input per line; ``*`` marks the default input."""
    header = ("", "index", "name", "host API", "channels", "default rate")
    rows = [
        (
            "*" if d.is_default else "",
            str(d.index),
            d.name,
            d.hostapi,
            str(d.channels),
            f"{d.default_rate:g} Hz",
        )
        for d in devices
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    right = {1, 4, 5}  # numbers line up on the right

    def line(r: Sequence[str]) -> str:
        cells = (
            c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        return " ".join(cells).rstrip()

    return "\n".join(line(r) for r in [header, *rows])
