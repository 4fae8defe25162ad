"""Capture cost: PortAudio callback time per block, callback → ring latency, and the CPU share
of this process while capturing 48 kHz stereo through a PulseAudio null sink.

By default a private PulseAudio daemon is started (as in tests/test_capture_pulse.py) with a
null sink ``vsink`` at the chosen rate and channels, and a speech-like signal is played into it
with ``paplay`` for the whole run. ``--device NAME`` without ``--private-pulse`` uses whatever
server and device exist.

    python scripts/bench_capture.py --seconds 10 --json bench_capture.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from glmasr_live.audio.capture import MicrophoneSource
from glmasr_live.audio.capture_types import CaptureSettings
from glmasr_live.audio.devices import rescan_devices
from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.events import SAMPLE_RATE


def start_pulse(root: Path, rate: int, channels: int) -> tuple[dict[str, str], int]:
    """A private PulseAudio daemon with a null sink ``vsink``; returns (client env, pid)."""
    sock = root / "native"
    env = dict(
        os.environ,
        HOME=str(root),
        XDG_RUNTIME_DIR=str(root),
        PULSE_RUNTIME_PATH=str(root / "pulse"),
        PULSE_STATE_PATH=str(root / "state"),
        PULSE_SERVER=f"unix:{sock}",
    )
    cmd = ["pulseaudio", "-D", "-n", "--exit-idle-time=-1", f"--log-target=file:{root / 'pulse.log'}"]
    cmd += [f"--load=module-native-protocol-unix auth-anonymous=1 socket={sock}"]
    cmd += [f"--load=module-null-sink sink_name=vsink rate={rate} channels={channels} norewinds=1"]
    subprocess.run(cmd, env=env, check=True, timeout=20)  # -D returns once the daemon is ready
    subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=env, check=True, timeout=10)
    return env, int((root / "pulse" / "pid").read_text().split()[0])


def test_signal(seconds: float, rate: int, channels: int) -> np.ndarray:
    """Amplitude-modulated pink-ish noise: a speech-like level pattern, different per channel."""
    rng = np.random.default_rng(0)
    n = int(seconds * rate)
    t = np.arange(n) / rate
    env = 0.5 * (1 + np.sin(2 * np.pi * 3 * t)) * (np.sin(2 * np.pi * 0.4 * t) > -0.3)
    x = np.cumsum(rng.standard_normal((n, channels)), axis=0)
    x -= np.convolve(x[:, 0], np.ones(64) / 64, mode="same")[:, None]  # drop the low-frequency drift
    x /= np.abs(x).max()
    return (0.3 * x * env[:, None]).astype(np.float32)


def run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-capture-"))
    pid = 0
    player: subprocess.Popen[bytes] | None = None
    try:
        env = dict(os.environ)
        if args.private_pulse:
            env, pid = start_pulse(tmp, args.rate, args.channels)
            os.environ["PULSE_SERVER"] = env["PULSE_SERVER"]
            rescan_devices()
        wav = tmp / "signal.wav"
        sf.write(wav, test_signal(args.seconds + 3, args.rate, args.channels), args.rate, subtype="FLOAT")
        settings = CaptureSettings(
            args.device, samplerate=args.rate, channels=args.channels, block_s=args.block_ms / 1000
        )
        src = MicrophoneSource(settings)
        ring = RingBuffer(SAMPLE_RATE * int(args.seconds + 10))
        src.start(ring)
        player = subprocess.Popen(["paplay", "--device=vsink", str(wav)], env=env)
        ring.wait_for(SAMPLE_RATE // 2, timeout=5)  # running and past start-up
        src.reset_timing()
        cpu0, wall0 = time.process_time(), time.monotonic()
        # Blocking on an event nobody sets is the measurement window; nothing polls meanwhile.
        threading.Event().wait(args.seconds)
        cpu1, wall1 = time.process_time(), time.monotonic()
        timing, stats = src.timing, src.stats
        src.stop()
    finally:
        if player is not None:
            player.terminate()
            player.wait(5)
        if pid:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)
    wall = wall1 - wall0
    return {
        "device": args.device,
        "rate": args.rate,
        "channels": args.channels,
        "block_ms": args.block_ms,
        "seconds": round(wall, 3),
        "blocks": timing.blocks,
        "callback_us_mean": round(timing.callback_us_mean, 1),
        "callback_us_max": round(timing.callback_us_max, 1),
        "ring_latency_ms_mean": round(timing.ring_latency_ms_mean, 3),
        "ring_latency_ms_max": round(timing.ring_latency_ms_max, 3),
        "portaudio_input_latency_ms": round(timing.input_latency_ms, 1),
        "cpu_percent_of_one_core": round(100 * (cpu1 - cpu0) / wall, 2),
        "overflows": stats.overflows,
        "dropped_blocks": stats.dropped_blocks,
        "dropped_samples": stats.dropped_samples,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="measurement window (default 10)")
    p.add_argument("--rate", type=int, default=48_000, help="capture rate in Hz (default 48000)")
    p.add_argument("--channels", type=int, default=2, help="capture channels (default 2)")
    p.add_argument("--block-ms", type=float, default=20.0, help="PortAudio block length (default 20)")
    p.add_argument("--device", default="pulse", help="input device name or index (default pulse)")
    p.add_argument(
        "--no-private-pulse",
        dest="private_pulse",
        action="store_false",
        help="use the running audio server instead of starting a private PulseAudio",
    )
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args()
    if args.private_pulse and shutil.which("pulseaudio") is None:
        print("bench_capture: needs the pulseaudio program (or --no-private-pulse)", file=sys.stderr)
        return 2
    result = run(args)
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k:<{width}}  {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
