"""Real capture through PortAudio → ALSA "pulse" plugin → a private PulseAudio daemon whose null
sink ``vsink`` is played into with ``paplay``; its monitor is the default source.

The daemon runs as root with a private runtime dir, so it never touches a user's session.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from glmasr_live.audio.capture import MicrophoneSource
from glmasr_live.audio.capture_types import CaptureEvent, CaptureSettings
from glmasr_live.audio.devices import InputDevice, find_input_device, rescan_devices
from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.errors import DeviceError
from glmasr_live.events import SAMPLE_RATE

needs_pulse_skip = pytest.mark.skipif(
    shutil.which("pulseaudio") is None, reason="needs the pulseaudio program"
)

SINK_RATE = 48_000


class PulseDaemon:
    """A private PulseAudio daemon with a 48 kHz mono null sink ``vsink``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket = root / "native"
        self.env = dict(
            os.environ,
            HOME=str(root),
            XDG_RUNTIME_DIR=str(root),
            PULSE_RUNTIME_PATH=str(root / "pulse"),
            PULSE_STATE_PATH=str(root / "state"),
            PULSE_SERVER=f"unix:{self.socket}",
        )
        self.pid = 0

    def start(self) -> None:
        # A pid file left by a killed daemon would make the new one refuse to start.
        (self.root / "pulse" / "pid").unlink(missing_ok=True)
        cmd = [
            "pulseaudio",
            "-D",  # the parent exits once the daemon is ready: no readiness polling needed
            "-n",  # no default.pa: only the modules below
            "--exit-idle-time=-1",
            "--log-target=file:" + str(self.root / "pulse.log"),
            f"--load=module-native-protocol-unix auth-anonymous=1 socket={self.socket}",
            f"--load=module-null-sink sink_name=vsink rate={SINK_RATE} channels=1 norewinds=1",
        ]
        subprocess.run(cmd, env=self.env, check=True, timeout=20)
        self.pid = int((self.root / "pulse" / "pid").read_text().split()[0])
        self.pactl("set-default-source", "vsink.monitor")

    def pactl(self, *args: str) -> None:
        subprocess.run(["pactl", *args], env=self.env, check=True, timeout=10, capture_output=True)

    def play(self, path: Path) -> None:
        # paplay returns after the stream drained into the sink.
        subprocess.run(["paplay", "--device=vsink", str(path)], env=self.env, check=True, timeout=30)

    def kill(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.pid = 0


FAKE_DEVICES = [
    InputDevice(0, "HDA Intel PCH: ALC257 Analog (hw:0,0)", "ALSA", 2, 44100.0, False),
    InputDevice(3, "USB Audio Device: - (hw:2,0)", "ALSA", 1, 48000.0, False),
    InputDevice(7, "pulse", "ALSA", 32, 44100.0, False),
    InputDevice(8, "default", "ALSA", 32, 44100.0, True),
]


def test_find_input_device_by_name_index_and_default() -> None:
    assert find_input_device(None, FAKE_DEVICES).index == 8
    assert find_input_device("usb", FAKE_DEVICES).index == 3
    assert find_input_device("PULSE", FAKE_DEVICES).index == 7
    assert find_input_device(3, FAKE_DEVICES).index == 3
    assert find_input_device("0", FAKE_DEVICES).index == 0
    # Exact name beats a substring match elsewhere ("default" is not "default2").
    both = [*FAKE_DEVICES, InputDevice(9, "default2", "ALSA", 2, 48000.0, False)]
    assert find_input_device("default", both).index == 8


def test_find_input_device_errors_say_what_exists() -> None:
    with pytest.raises(DeviceError) as exc:
        find_input_device("webcam", FAKE_DEVICES)
    msg = str(exc.value)
    assert "'webcam'" in msg and "3 'USB Audio Device: - (hw:2,0)'" in msg and "--input-device" in msg
    with pytest.raises(DeviceError, match="no input device with index 5"):
        find_input_device(5, FAKE_DEVICES)
    with pytest.raises(DeviceError, match="no audio input device found.*glmasr-live devices"):
        find_input_device(None, [])


def test_devices_table() -> None:
    from glmasr_live.commands.devices import format_devices

    lines = format_devices(FAKE_DEVICES).splitlines()
    assert len(lines) == 5 and "name" in lines[0] and "default rate" in lines[0]
    assert lines[4].startswith("*") and "default" in lines[4] and "44100 Hz" in lines[4]
    assert not lines[3].startswith("*")


@pytest.fixture
def pulse(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseDaemon]:
    d = PulseDaemon(tmp_path_factory.mktemp("pulse"))
    d.start()
    # The ALSA "pulse" plugin inside PortAudio reads PULSE_SERVER when a stream opens.
    monkeypatch.setenv("PULSE_SERVER", d.env["PULSE_SERVER"])
    rescan_devices()  # PortAudio lists ALSA's pulse devices only if the server was up at init
    try:
        yield d
    finally:
        d.kill()


class Events:
    """Collects capture events; one threading.Event per kind to wait on."""

    def __init__(self) -> None:
        self.log: list[CaptureEvent] = []
        self.seen: dict[str, threading.Event] = {
            k: threading.Event() for k in ("opened", "stalled", "reopened", "reopen_failed", "callback_error")
        }

    def __call__(self, e: CaptureEvent) -> None:
        self.log.append(e)
        self.seen[e.kind].set()


def best_lag_correlation(x: np.ndarray, ref: np.ndarray) -> tuple[float, int]:
    """Normalized cross-correlation of ``ref`` inside ``x``, at the best lag (x[lag:] ≈ ref)."""
    size = 1 << (len(x) + len(ref)).bit_length()
    cc = np.fft.irfft(np.fft.rfft(x, size) * np.conj(np.fft.rfft(ref, size)), size)[: len(x)]
    lag = int(np.argmax(cc[: max(1, len(x) - len(ref) + 1)]))
    seg = x[lag : lag + len(ref)].astype(np.float64)
    r = ref[: len(seg)].astype(np.float64)
    return float(seg @ r / np.sqrt((seg @ seg) * (r @ r) + 1e-20)), lag


@pytest.mark.pulse
@needs_pulse_skip
def test_device_lookup(pulse: PulseDaemon) -> None:
    assert find_input_device("PULSE").name == "pulse"
    with pytest.raises(DeviceError, match="available inputs: .*'pulse'"):
        find_input_device("no such microphone")
    with pytest.raises(DeviceError, match="no input device with index 999"):
        find_input_device(999)


@pytest.mark.pulse
@needs_pulse_skip
def test_capture_matches_played_file(pulse: PulseDaemon, tmp_path: Path) -> None:
    import soundfile as sf

    from glmasr_live.devtools.synth import Voice, render

    speech = 0.5 * render("testing the microphone capture path one two three", Voice())
    wav = tmp_path / "speech48k.wav"
    sf.write(wav, soxr.resample(speech, SAMPLE_RATE, SINK_RATE, "VHQ"), SINK_RATE, subtype="FLOAT")

    events = Events()
    src = MicrophoneSource(CaptureSettings("pulse", samplerate=SINK_RATE, channels=1), on_event=events)
    ring = RingBuffer(SAMPLE_RATE * 30)
    src.start(ring)
    try:
        assert events.seen["opened"].is_set()
        assert ring.wait_for(SAMPLE_RATE // 10, timeout=5), "no audio from the null sink monitor"
        begin = ring.write_index
        pulse.play(wav)
        assert ring.wait_for(ring.write_index + SAMPLE_RATE // 2, timeout=5)  # the tail arrives
    finally:
        src.stop()
    captured = ring.read(begin, ring.write_index)
    corr, lag = best_lag_correlation(captured, speech)
    print(f"correlation {corr:.5f} at lag {lag}; {src.stats}; {src.timing}")
    assert corr > 0.95, f"correlation {corr:.4f} at lag {lag}"
    assert ring.closed and src.finished.is_set()
    stats = src.stats
    assert stats.frames_read > 0 and stats.samples_written > 0 and stats.callback_errors == 0
    t = src.timing
    assert t.blocks > 0 and t.callback_us_mean < 5_000


class StallingRing(RingBuffer):
    """A ring whose writer blocks until ``release`` is set: simulates a stalled converter."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.release = threading.Event()

    def write(self, samples: np.ndarray) -> int:
        self.release.wait(timeout=30)
        return super().write(samples)


@pytest.mark.pulse
@needs_pulse_skip
def test_full_queue_drops_are_counted_and_marked(pulse: PulseDaemon) -> None:
    settings = CaptureSettings("pulse", samplerate=SINK_RATE, channels=1, queue_blocks=2)
    src = MicrophoneSource(settings)
    ring = StallingRing(SAMPLE_RATE * 30)
    t0 = time.monotonic()
    src.start(ring)
    try:
        assert src.dropping.wait(5), "the callback never found the queue full"
        ring.release.set()
        # The next block after the drops carries the count; the converter marks the gap first.
        assert ring.wait_for_gap(-1, timeout=5)
        stats = src.stats
        gaps = ring.gaps_since(-1)
    finally:
        src.stop()
    elapsed = time.monotonic() - t0
    assert stats.dropped_blocks >= 1
    assert gaps and all("queue full" in g.reason for g in gaps)
    block_16k = round(settings.block_s * SAMPLE_RATE)
    marked = sum(g.missing for g in gaps)
    assert block_16k <= marked <= stats.dropped_blocks * block_16k + 1
    # Gaps keep the stream clock honest: ring samples never run ahead of wall time by more than
    # what the server had buffered at start-up (PortAudio latency + PulseAudio's prebuffer).
    assert ring.write_index <= (elapsed + 0.25) * SAMPLE_RATE


@pytest.mark.pulse
@needs_pulse_skip
def test_dead_server_is_reported_gap_marked_and_reopened(pulse: PulseDaemon) -> None:
    events = Events()
    settings = CaptureSettings("pulse", samplerate=SINK_RATE, channels=1, backoff_s=(0.2, 0.4))
    src = MicrophoneSource(settings, on_event=events)
    ring = RingBuffer(SAMPLE_RATE * 60)
    src.start(ring)
    try:
        assert ring.wait_for(SAMPLE_RATE // 2, timeout=5)
        before = ring.write_index
        killed = time.monotonic()
        pulse.kill()
        assert events.seen["stalled"].wait(3), "watchdog did not report the dead server"
        stalled = next(e for e in events.log if e.kind == "stalled")
        assert stalled.time - killed < 2.0
        # The converter marks the gap right after the report.
        gap = ring.wait_for_gap(before, timeout=2)[0]
        assert "stalled" in gap.reason
        assert gap.sample > before
        assert events.seen["reopen_failed"].wait(5)  # no server: attempts fail, with backoff

        pulse.start()  # the server comes back: the watchdog rescans and reopens
        assert events.seen["reopened"].wait(10), [e.message for e in events.log]
        resumed = ring.write_index
        assert ring.wait_for(resumed + SAMPLE_RATE // 4, timeout=5), "no audio after reopening"
        assert any("reopened" in g.reason for g in ring.gaps_since(gap.sample))
        assert src.stats.stalls >= 1 and src.stats.reopens == 1
    finally:
        src.stop()
    assert ring.closed
    # The stream clock kept running through the outage: gaps ≈ the time without audio, which
    # runs from the kill to the reopened stream's first audio.
    outage = ring.gaps_since(before)
    reopened = next(e for e in events.log if e.kind == "reopened")
    marked = sum(g.missing for g in outage) / SAMPLE_RATE
    without_audio = reopened.time - killed
    print("gaps:", outage, "events:", [(e.kind, round(e.time - killed, 3)) for e in events.log])
    # Measured: within 0.03 s (0.69-0.72 s of outage). What is allowed for: the last block before
    # the kill (20 ms) and the first block after the reopen, which starts within the new
    # stream's input latency. A gap left out or counted twice is off by a backoff step (0.2 s)
    # or the stall timeout (1 s), more than the 0.15 s allowed.
    assert abs(marked - without_audio) < 0.15, (marked, without_audio, outage)


@pytest.mark.pulse
@needs_pulse_skip
def test_frozen_server_is_caught_by_the_callback_timeout(pulse: PulseDaemon) -> None:
    """A server that hangs (SIGSTOP) ends no stream: only the missing callbacks tell."""
    events = Events()
    settings = CaptureSettings("pulse", samplerate=SINK_RATE, channels=1, backoff_s=(0.2,))
    src = MicrophoneSource(settings, on_event=events)
    ring = RingBuffer(SAMPLE_RATE * 60)
    src.start(ring)
    try:
        assert ring.wait_for(SAMPLE_RATE // 2, timeout=5)
        before = ring.write_index
        frozen = time.monotonic()
        os.kill(pulse.pid, signal.SIGSTOP)
        try:
            assert events.seen["stalled"].wait(3)
            stalled = next(e for e in events.log if e.kind == "stalled")
            assert 0.9 <= stalled.time - frozen < 2.0
            assert "no audio for" in stalled.message
            gap = ring.wait_for_gap(before, timeout=2)[0]
            assert gap.missing >= 0.8 * SAMPLE_RATE  # the second without callbacks
        finally:
            os.kill(pulse.pid, signal.SIGCONT)
        assert events.seen["reopened"].wait(10), [e.message for e in events.log]
        resumed = ring.write_index
        assert ring.wait_for(resumed + SAMPLE_RATE // 4, timeout=5)
    finally:
        src.stop()


@pytest.mark.pulse
@needs_pulse_skip
def test_devices_command(pulse: PulseDaemon) -> None:
    import json
    import sys

    cmd = [sys.executable, "-m", "glmasr_live", "devices"]
    out = subprocess.run(cmd, env=pulse.env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert any(line.split()[1:2] == ["pulse"] for line in out.stdout.splitlines()[1:])
    assert any(line.startswith("*") for line in out.stdout.splitlines())
    out = subprocess.run([*cmd, "--json"], env=pulse.env, capture_output=True, text=True, timeout=60)
    listed = json.loads(out.stdout)
    assert {"index", "name", "hostapi", "channels", "default_rate", "is_default"} <= set(listed[0])
    assert "pulse" in [d["name"] for d in listed]
