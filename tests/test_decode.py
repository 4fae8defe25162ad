"""load_audio on real files made once per session: espeak-ng speech converted by sox/ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soxr

from glmasr_live.audio.decode import load_audio
from glmasr_live.errors import AudioInputError
from glmasr_live.events import SAMPLE_RATE

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs the espeak-ng and sox programs (apt-get install espeak-ng sox)",
)


def best_correlation(x: np.ndarray, ref: np.ndarray, max_lag: int) -> tuple[float, int]:
    """Largest normalized cross-correlation of ``x`` against ``ref`` over lags ±max_lag.

    Returns (correlation, lag) where ``x[i + lag] ≈ ref[i]``.
    """
    n = len(x) + len(ref)
    size = 1 << (n - 1).bit_length()
    spec = np.fft.rfft(x.astype(np.float64), size) * np.conj(np.fft.rfft(ref.astype(np.float64), size))
    cc = np.fft.irfft(spec, size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    vals = cc[lags % size]
    i = int(np.argmax(vals))
    lag = int(lags[i])
    # Normalise by the energy of the overlapping parts so a lag does not inflate the score.
    a = x[max(lag, 0) : max(lag, 0) + len(ref)].astype(np.float64)
    b = ref[max(-lag, 0) : max(-lag, 0) + len(a)].astype(np.float64)
    a = a[: len(b)]
    denom = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return (float(np.dot(a, b)) / denom if denom else 0.0), lag


@dataclass(frozen=True)
class Variant:
    """A test file and what load_audio should return for it."""

    path: Path
    expected: np.ndarray
    min_corr: float
    max_lag: int = 64


@pytest.fixture(scope="session")
def speech_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Variant]:
    import soundfile as sf

    from glmasr_live.devtools.synth import Voice, render, write_wav

    d = tmp_path_factory.mktemp("decode")
    speech = render("the quick brown fox jumps over the lazy dog", Voice())
    speech = np.concatenate([np.zeros(1600, np.float32), speech * 0.7, np.zeros(1600, np.float32)])
    ref_path = d / "ref16k.wav"
    write_wav(ref_path, speech)
    ref = sf.read(ref_path, dtype="float32")[0]  # what the 16-bit file holds

    def sox(name: str, out_opts: list[str], effects: list[str] = []) -> Path:  # noqa: B006
        out = d / name
        subprocess.run(["sox", str(ref_path), *out_opts, str(out), *effects], check=True)
        return out

    narrow = soxr.resample(soxr.resample(ref, SAMPLE_RATE, 8000, "VHQ"), 8000, SAMPLE_RATE, "VHQ")
    files = {
        "wav16": Variant(ref_path, ref, 0.9999, 0),
        "u8": Variant(sox("u8.wav", ["-b", "8", "-e", "unsigned-integer"]), ref, 0.99),
        # Right channel at half level: a correct downmix averages to 0.75 × the left channel.
        "stereo": Variant(sox("stereo.wav", ["-c", "2"], ["remix", "1", "1v0.5"]), 0.75 * ref, 0.9999),
        "8k": Variant(sox("r8k.wav", [], ["rate", "-v", "8000"]), narrow, 0.995),
        "96k": Variant(sox("r96k.wav", ["-b", "24"], ["rate", "-v", "96000"]), ref, 0.999),
        "flac": Variant(sox("x.flac", [], ["rate", "-v", "44100"]), ref, 0.999),
        "ogg": Variant(sox("x.ogg", ["-C", "6"], ["rate", "-v", "22050"]), ref, 0.99),
        # mp3 adds encoder delay (~1100 samples at 44.1 kHz) and padding: the lag search finds it.
        "mp3": Variant(sox("x.mp3", ["-C", "128"], ["rate", "-v", "44100"]), ref, 0.99, 2048),
    }
    if shutil.which("ffmpeg"):
        m4a = d / "x.m4a"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", str(files["flac"].path), "-c:a", "aac", str(m4a)],
            check=True,
        )
        files["m4a"] = Variant(m4a, ref, 0.99, 4096)
    return files


VARIANTS = ["wav16", "u8", "stereo", "8k", "96k", "flac", "ogg", "mp3", "m4a"]


@pytest.mark.parametrize("name", VARIANTS)
def test_reads_format_as_16k_mono(speech_files: dict[str, Variant], name: str) -> None:
    if name not in speech_files:
        pytest.skip("needs ffmpeg for containers libsndfile does not read")
    v = speech_files[name]
    audio = load_audio(v.path)
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.flags.c_contiguous
    # Length within the codec's padding; 16 kHz is the only clock downstream stages know.
    assert abs(len(audio) - len(v.expected)) <= 2 * v.max_lag + 32
    corr, lag = best_correlation(audio, v.expected, v.max_lag)
    assert corr > v.min_corr, f"{name}: correlation {corr:.4f} at lag {lag}"
    # Level preserved (no gain from the downmix or the resampler).
    seg = audio[max(lag, 0) : max(lag, 0) + len(v.expected)]
    ratio = np.sqrt(np.mean(seg**2) / np.mean(v.expected[: len(seg)] ** 2))
    assert 0.9 < ratio < 1.1, f"{name}: level ratio {ratio:.3f}"


def test_accepts_str_and_path(speech_files: dict[str, Variant]) -> None:
    p = speech_files["wav16"].path
    np.testing.assert_array_equal(load_audio(str(p)), load_audio(p))


def _error_line(path: Path, **kw: bool) -> str:
    with pytest.raises(AudioInputError) as exc:
        load_audio(path, **kw)
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg, msg
    return msg


def test_missing_file(tmp_path: Path) -> None:
    assert "no such file" in _error_line(tmp_path / "nope.wav")


def test_directory(tmp_path: Path) -> None:
    assert "directory" in _error_line(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.wav"
    p.write_bytes(b"")
    assert "empty" in _error_line(p)


def test_zero_samples(tmp_path: Path) -> None:
    import soundfile as sf

    p = tmp_path / "zero.wav"
    sf.write(p, np.zeros((0, 1), np.float32), 16000)
    assert "no audio samples" in _error_line(p)


def test_not_audio(tmp_path: Path) -> None:
    p = tmp_path / "notes.wav"
    p.write_text("these are meeting notes, not a recording\n" * 20)
    assert "not a readable audio file" in _error_line(p)


@pytest.mark.parametrize("name", ["wav16", "stereo", "flac", "ogg"])
def test_truncated(speech_files: dict[str, Variant], tmp_path: Path, name: str) -> None:
    src = speech_files[name].path
    data = src.read_bytes()
    p = tmp_path / f"cut-{src.name}"
    p.write_bytes(data[: len(data) // 2 + 1])  # + 1: also cuts a sample in half
    assert "truncated or corrupt" in _error_line(p)


def test_truncated_allowed_keeps_what_is_there(speech_files: dict[str, Variant], tmp_path: Path) -> None:
    v = speech_files["wav16"]
    data = v.path.read_bytes()
    p = tmp_path / "cut.wav"
    p.write_bytes(data[: len(data) // 2])
    audio = load_audio(p, allow_truncated=True)
    assert abs(len(audio) - len(v.expected) // 2) < 100
    np.testing.assert_allclose(audio, v.expected[: len(audio)], atol=1e-6)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_truncated_ffmpeg_container(speech_files: dict[str, Variant], tmp_path: Path) -> None:
    src = speech_files["m4a"].path
    data = src.read_bytes()
    p = tmp_path / "cut.m4a"
    p.write_bytes(data[: len(data) // 2])
    msg = _error_line(p)
    assert "truncated or corrupt" in msg or "not a readable audio file" in msg
