"""Audio input devices as PortAudio lists them: the lazy ``sounddevice`` loader (the only place
that imports it), rescanning, listing, and resolving ``--input-device NAME|INDEX``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from glmasr_live.errors import DeviceError

log = logging.getLogger(__name__)


def sounddevice() -> Any:
    """The sounddevice module, imported on first use so ``import glmasr_live`` stays fast."""
    try:
        import sounddevice as sd
    except OSError:  # sounddevice raises OSError when it cannot load libportaudio
        raise DeviceError(
            "the PortAudio library is missing (Debian: apt-get install libportaudio2)"
        ) from None
    return sd


@dataclass(frozen=True, slots=True)
class InputDevice:
    """An audio input as PortAudio lists it.

    Fields:
        index: PortAudio device index (valid until the next rescan).
        name: device name; ``--input-device`` matches a substring of it.
        hostapi: host API (ALSA, JACK, Core Audio, WASAPI...).
        channels: maximum input channels.
        default_rate: the device's default sample rate in Hz.
        is_default: the default input device.
    """

    index: int
    name: str
    hostapi: str
    channels: int
    default_rate: float
    is_default: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def rescan_devices() -> None:
    """Re-initialise PortAudio so it sees devices and audio servers that appeared since it
    started (PortAudio has no hot-plug). Every stream of this process must be closed first."""
    sd = sounddevice()
    sd._terminate()
    sd._initialize()


def list_input_devices() -> list[InputDevice]:
    """Every device with at least one input channel."""
    sd = sounddevice()
    apis = sd.query_hostapis()
    try:
        default = int(sd.query_devices(kind="input")["index"])
    except (sd.PortAudioError, ValueError, KeyError):
        default = -1  # no default input: PortAudio raises 'Error querying device -1'
    return [
        InputDevice(
            index=int(d["index"]),
            name=str(d["name"]),
            hostapi=str(apis[d["hostapi"]]["name"]),
            channels=int(d["max_input_channels"]),
            default_rate=float(d["default_samplerate"]),
            is_default=int(d["index"]) == default,
        )
        for d in sd.query_devices()
        if d["max_input_channels"] > 0
    ]


def find_input_device(
    spec: str | int | None = None, devices: Sequence[InputDevice] | None = None
) -> InputDevice:
    """The device for ``--input-device NAME|INDEX`` (None: the default input).

    A name matches case-insensitively, exactly first, else as a substring (the first of
    several wins, and the choice is logged). Raises DeviceError with what exists otherwise.
    """
    devices = list_input_devices() if devices is None else list(devices)
    if not devices:
        raise DeviceError(
            "no audio input device found: connect a microphone or start the audio server "
            "(PulseAudio/PipeWire), list inputs with `glmasr-live devices` and pick one with "
            "--input-device; or caption a file or stdin instead"
        )
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return next((d for d in devices if d.is_default), devices[0])
    if isinstance(spec, int) or spec.strip().isdigit():
        for d in devices:
            if d.index == int(spec):
                return d
        raise DeviceError(f"no input device with index {int(spec)}; {_available(devices)}")
    needle = spec.strip().casefold()
    exact = [d for d in devices if d.name.casefold() == needle]
    matches = exact or [d for d in devices if needle in d.name.casefold()]
    if not matches:
        raise DeviceError(f"no input device matches {spec!r}; {_available(devices)}")
    if len(matches) > 1:
        log.info("--input-device %r matches %s; using %r", spec, [d.name for d in matches], matches[0].name)
    return matches[0]


def _available(devices: Sequence[InputDevice]) -> str:
    names = ", ".join(f"{d.index} {d.name!r}" for d in devices)
    return f"available inputs: {names} (choose with --input-device NAME|INDEX)"
