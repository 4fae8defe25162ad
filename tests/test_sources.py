"""FileSource and StdinSource into a real RingBuffer; streaming resampling continuity."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from glmasr_live.audio.loss_detector import SilentLossDetector
from glmasr_live.audio.resampler import STREAM_RESAMPLE_QUALITY, StreamResampler
from glmasr_live.audio.ringbuffer import RingBuffer
from glmasr_live.audio.sources import PCM_FORMATS, AudioSource, FileSource, StdinSource
from glmasr_live.errors import AudioInputError
from glmasr_live.events import SAMPLE_RATE


def tone(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    x = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.repeat(x[:, None], channels, axis=1) if channels > 1 else x


@pytest.fixture
def wav_48k(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 1.5 s 48 kHz stereo tone file and its expected 16 kHz mono content."""
    x = tone(48_000, 1.5, channels=2)
    p = tmp_path / "tone.wav"
    sf.write(p, x, 48_000, subtype="FLOAT")
    return p, soxr.resample(x[:, 0], 48_000, SAMPLE_RATE, quality="VHQ")


def test_file_source_fast(wav_48k: tuple[Path, np.ndarray]) -> None:
    path, expected = wav_48k
    ring = RingBuffer(SAMPLE_RATE * 5)
    src = FileSource(path)
    assert isinstance(src, AudioSource)
    t0 = time.monotonic()
    src.start(ring)
    assert src.wait(10)
    assert time.monotonic() - t0 < 1.0  # not paced
    assert ring.closed and ring.write_index == len(expected)
    np.testing.assert_allclose(ring.read(0, ring.write_index), expected, atol=1e-5)
    assert src.native_rate == 48_000 and src.stats.samples_written == len(expected)
    src.stop()


def test_file_source_fast_waits_for_lossless_reader(wav_48k: tuple[Path, np.ndarray]) -> None:
    path, expected = wav_48k
    ring = RingBuffer(4000)  # much smaller than the file
    ring.advance_reader(0)
    src = FileSource(path, block_s=0.05)
    src.start(ring)
    got: list[np.ndarray] = []
    pos = 0
    while ring.wait_for(pos + 1, timeout=10):
        end = ring.write_index
        got.append(ring.read(pos, end))
        pos = end
        ring.advance_reader(pos)
    assert src.wait(10)
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-5)


def test_file_source_realtime_paces_and_stops(wav_48k: tuple[Path, np.ndarray]) -> None:
    path, expected = wav_48k
    ring = RingBuffer(SAMPLE_RATE * 5)
    src = FileSource(path, realtime=True, speed=2.0)
    t0 = time.monotonic()
    src.start(ring)
    # Half the audio (0.75 s of it) must not arrive before 0.375 s at speed 2.
    assert ring.wait_for(len(expected) // 2, timeout=5)
    assert time.monotonic() - t0 >= 0.75 / 2 - 0.02
    assert src.wait(5)
    elapsed = time.monotonic() - t0
    assert 0.74 <= elapsed < 1.5, elapsed
    np.testing.assert_allclose(ring.read(0, ring.write_index), expected, atol=1e-5)

    ring2 = RingBuffer(SAMPLE_RATE * 5)
    slow = FileSource(path, realtime=True)
    slow.start(ring2)
    assert ring2.wait_for(1600, timeout=5)
    slow.stop()  # must not wait for the rest of the file
    assert slow.finished.is_set() and ring2.closed
    assert ring2.write_index < len(expected)


def test_file_source_bad_file_fails_in_caller(tmp_path: Path) -> None:
    with pytest.raises(AudioInputError, match="no such file"):
        FileSource(tmp_path / "missing.wav").start(RingBuffer(100))


WRITER = """
import sys, numpy as np
rate, seconds, extra = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
t = np.arange(int(rate * seconds)) / rate
x = np.round(0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype('<i2')
stereo = np.stack([x, x], axis=1).tobytes()
out = sys.stdout.buffer
for i in range(0, len(stereo), 1234):   # odd-sized writes: frames split across reads
    out.write(stereo[i:i + 1234]); out.flush()
out.write(b"\\x01" * extra); out.flush()
"""


def run_pipe(tmp_path: Path, extra: int) -> tuple[StdinSource, RingBuffer]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, "22050", "1.0", str(extra)], stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    ring = RingBuffer(SAMPLE_RATE * 3)
    src = StdinSource(proc.stdout, fmt="s16le", rate=22050, channels=2)
    src.start(ring)
    src.finished.wait(20)
    proc.wait(10)
    proc.stdout.close()
    return src, ring


def test_stdin_source_through_a_real_pipe(tmp_path: Path) -> None:
    src, ring = run_pipe(tmp_path, extra=0)
    assert src.wait(0) and src.error is None and ring.closed
    x = np.round(tone(22050, 1.0) * 32767) / 32768
    expected = soxr.resample(x.astype(np.float32), 22050, SAMPLE_RATE, quality=STREAM_RESAMPLE_QUALITY)
    assert src.stats.frames_read == 22050
    assert abs(ring.write_index - len(expected)) <= 1
    n = min(len(expected), ring.write_index)
    np.testing.assert_allclose(ring.read(0, n), expected[:n], atol=1e-4)


def test_stdin_partial_trailing_sample_is_an_error(tmp_path: Path) -> None:
    src, ring = run_pipe(tmp_path, extra=3)  # 3 bytes: less than one 4-byte stereo frame
    assert ring.closed and ring.write_index > 15_000  # the whole frames were delivered
    with pytest.raises(AudioInputError, match="partial sample") as exc:
        src.wait(0)
    assert "\n" not in str(exc.value)
    ring2 = RingBuffer(100)
    with pytest.raises(AudioInputError, match="partial sample"):  # same in the caller's thread
        StdinSource(io.BytesIO(b"\x00\x01\x02"), fmt="s16le", rate=16000).run(ring2)


def test_stdin_stop_wakes_an_idle_pipe() -> None:
    import os

    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as stream:
        src = StdinSource(stream, fmt="f32le", rate=16000)  # type: ignore[arg-type]
        ring = RingBuffer(1000)
        src.start(ring)
        os.write(w, np.ones(160, "<f4").tobytes())
        assert ring.wait_for(160, timeout=5)
        src.stop()  # nothing more is written: stop must not hang in select()
        assert src.finished.wait(5) and ring.closed and src.error is None
    os.close(w)


@pytest.mark.parametrize(
    ("fmt", "raw", "value"),
    [
        ("s16le", np.array([-16384], "<i2").tobytes(), -0.5),
        ("s32le", np.array([2**30], "<i4").tobytes(), 0.5),
        ("f32le", np.array([0.25], "<f4").tobytes(), 0.25),
        ("u8", bytes([192]), 0.5),
    ],
)
def test_pcm_formats(fmt: str, raw: bytes, value: float) -> None:
    assert fmt in PCM_FORMATS
    ring = RingBuffer(100)
    StdinSource(io.BytesIO(raw * 10), fmt=fmt, rate=16000).run(ring)
    np.testing.assert_allclose(ring.read(0, 10), value)


def test_bad_raw_settings() -> None:
    with pytest.raises(AudioInputError, match="unknown raw PCM format"):
        StdinSource(io.BytesIO(), fmt="s24be", rate=16000)
    with pytest.raises(AudioInputError, match="rate from 1000 to 768000 Hz"):
        StdinSource(io.BytesIO(), fmt="s16le", rate=0)


@pytest.mark.parametrize("rate", [8000, 44100, 48000, 96000])
def test_streaming_resample_is_continuous(rate: int) -> None:
    """Odd-sized blocks through the streaming resampler equal one-shot resampling: no clicks or
    restarts at block boundaries."""
    x = tone(rate, 1.0, freq=1000.0, channels=2)
    rs = StreamResampler(rate, channels=2)
    rng = np.random.default_rng(rate)
    out, i = [], 0
    while i < len(x):
        n = int(rng.integers(1, 997))
        out.append(rs.process(x[i : i + n]))
        i += n
    out.append(rs.flush())
    y = np.concatenate(out)
    ref = soxr.resample(x[:, 0], rate, SAMPLE_RATE, quality=STREAM_RESAMPLE_QUALITY)
    assert len(y) == len(ref)
    np.testing.assert_allclose(y, ref, atol=1e-5)
    # No clicks: sample-to-sample steps stay within a clean 1 kHz sine's (0.5·2π·1000/16000 ≈ 0.2).
    inner = y[200:-200]
    assert np.abs(np.diff(inner)).max() < 0.21


def feed(det: SilentLossDetector, times: np.ndarray, frames: int) -> list[tuple[float, int]]:
    return [(float(t), lost) for t in times if (lost := det.block(float(t), frames))]


def test_silent_loss_detector_ignores_jitter_bursts_and_drift() -> None:
    rate, frames = 48_000, 960  # 20 ms blocks
    rng = np.random.default_rng(1)
    n = 30_000  # 10 minutes
    # Device clock 200 ppm slow against the monotonic clock, ±15 ms callback jitter.
    ideal = np.arange(1, n + 1) * frames / rate * (1 + 200e-6)
    det = SilentLossDetector(rate)
    assert feed(det, ideal + rng.uniform(0, 0.015, n), frames) == []
    # Callbacks held back for 1.5 s, then a catch-up burst delivers everything: nothing lost.
    det = SilentLossDetector(rate)
    t = np.arange(1, 301) * frames / rate
    late = t.copy()
    late[100:176] = np.maximum(t[100:176], t[175] + np.arange(76) * 1e-4)
    late[176:] = t[176:]
    assert feed(det, late, frames) == []


def test_silent_loss_detector_finds_lost_audio() -> None:
    rate, frames = 48_000, 960
    det = SilentLossDetector(rate)
    t = np.arange(1, 501) * frames / rate
    t[200:] += 1.0  # one second of audio never arrived
    found = feed(det, t, frames)
    assert len(found) == 1
    at, lost = found[0]
    assert abs(lost - rate) <= frames // 2
    assert t[200] <= at <= t[200] + det.settle_s + 0.05
