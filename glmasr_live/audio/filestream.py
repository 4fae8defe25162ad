"""Audio files as a stream of 16 kHz mono blocks, never the whole file in memory.

``open_file(path)`` checks the file (the same one-line errors as ``load_audio``) and tells its
duration when the container says; ``blocks()`` then yields float32 blocks of about
``block_s`` seconds. libsndfile reads the formats it knows block by block; anything else is
piped through ``ffmpeg`` (downmixed, float WAV at the native rate, on its stdout). Both go
through one soxr stream resampler at the quality ``load_audio`` uses, so a file streamed and a
file loaded whole differ only by the resampler's block edges (well under -100 dB).
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import soundfile as sf
import soxr

from glmasr_live.audio.decode import (
    NOT_RECOGNISED,
    RESAMPLE_QUALITY,
    _check_path,
    _one_line,
    _strip_path,
    _truncation,
    mp3_truncation,
)
from glmasr_live.audio.resampler import finite
from glmasr_live.errors import AudioInputError
from glmasr_live.events import SAMPLE_RATE

BLOCK_S = 2.0
"""Seconds per block read: big enough that per-block overhead is nil, small against memory."""


@dataclass(frozen=True)
class AudioFile:
    """A checked audio file: ``duration`` in seconds (``None`` when only decoding would tell)."""

    path: Path
    duration: float | None
    via_ffmpeg: bool

    def blocks(self, block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
        """16 kHz mono float32 blocks of the whole file, in order."""
        native = self._ffmpeg_blocks(block_s) if self.via_ffmpeg else self._soundfile_blocks(block_s)
        resampler: soxr.ResampleStream | None = None
        for rate, block in native:
            if rate == SAMPLE_RATE:
                yield block
                continue
            if resampler is None:
                resampler = soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                quality=RESAMPLE_QUALITY)  # fmt: skip
            out = resampler.resample_chunk(block)
            if len(out):
                yield out
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield tail

    def _soundfile_blocks(self, block_s: float) -> Iterator[tuple[int, np.ndarray]]:
        p = self.path
        try:
            with sf.SoundFile(str(p)) as f:
                n = max(1, int(block_s * f.samplerate))
                # Not f.blocks(): it trusts the header's frame count and hands out the rest of
                # its last block uninitialised when less decodes (a cut MP3 without a Xing
                # header); read() returns only the frames that decoded, and 0 at the end.
                while len(block := f.read(n, dtype="float32", always_2d=True)):
                    yield f.samplerate, _mono(block)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            raise AudioInputError(f"{p}: truncated or corrupt audio file ({_one_line(str(e))})") from None

    def _ffmpeg_blocks(self, block_s: float) -> Iterator[tuple[int, np.ndarray]]:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioInputError(f"{self.path}: needs ffmpeg to decode it, and ffmpeg is gone")
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", str(self.path), "-vn", "-ac", "1"]
        cmd += ["-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
        # stderr to a file, not a pipe: a flood of decoder errors must not block ffmpeg.
        with tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
            except OSError as e:
                raise AudioInputError(f"{self.path}: cannot run ffmpeg to decode it ({e.strerror})") from None
            got = yield from _pipe_blocks(proc, block_s)
            err.seek(0)
            errors = err.read(1 << 16).decode(errors="replace").split("\n")
        self._check_ffmpeg(proc.returncode, [e.strip() for e in errors if e.strip()], got)

    def _check_ffmpeg(self, code: int, errors: list[str], got: int) -> None:
        p = self.path
        if code != 0 or not got:
            detail = _strip_path(errors[-1], p) if errors else "ffmpeg could not decode it"
            if "does not contain any stream" in detail or "Output file does not contain" in detail:
                raise AudioInputError(f"{p}: contains no audio stream")
            raise AudioInputError(f"{p}: not a readable audio file ({detail})")
        if errors:
            raise AudioInputError(
                f"{p}: truncated or corrupt audio file (ffmpeg: {_strip_path(errors[0], p)})"
            )


def open_file(path: str | os.PathLike[str]) -> AudioFile:
    """Check ``path`` the way ``load_audio`` does, without decoding it.

    Raises:
        AudioInputError: missing, a directory, unreadable, empty, not audio, truncated.
    """
    p = Path(path)
    _check_path(p)
    problem = mp3_truncation(p)  # before libsndfile opens it: its mp3 decoder warns on stderr
    if problem:
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({problem})")
    try:
        with sf.SoundFile(str(p)) as f:
            info, frames, rate = f.extra_info, f.frames, f.samplerate
    except sf.LibsndfileError as e:
        if e.code not in NOT_RECOGNISED:
            raise AudioInputError(
                f"{p}: truncated or corrupt audio file ({_one_line(e.error_string)})"
            ) from None
        if shutil.which("ffmpeg") is None:
            reason = _one_line(e.error_string).lower()
            raise AudioInputError(
                f"{p}: not a readable audio file ({reason}; installing ffmpeg adds more formats)"
            ) from None
        return AudioFile(p, _ffprobe_duration(p), True)
    except (RuntimeError, OSError) as e:
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({_one_line(str(e))})") from None
    problem = _truncation(p, info)
    if problem:
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({problem})")
    if frames == 0:
        raise AudioInputError(f"{p}: contains no audio samples")
    return AudioFile(p, frames / rate if frames > 0 else None, False)


def _pipe_blocks(
    proc: subprocess.Popen[bytes], block_s: float
) -> Generator[tuple[int, np.ndarray], None, int]:
    """ffmpeg's float WAV from its stdout in blocks; returns the frames read (ffmpeg has exited)."""
    assert proc.stdout is not None
    got = 0
    try:
        rate = _wav_header(proc.stdout)
        if rate:
            n = max(1, int(block_s * rate)) * 4
            while data := proc.stdout.read(n):
                got += len(data) // 4
                yield rate, finite(np.frombuffer(data[: len(data) // 4 * 4], "<f4").astype(np.float32))[0]
        proc.wait()
    finally:
        if proc.poll() is None:  # the consumer stopped early (--max-seconds) or failed
            proc.kill()
            proc.wait()
        proc.stdout.close()
    return got


def _mono(block: np.ndarray) -> np.ndarray:
    mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else np.ascontiguousarray(block[:, 0])
    return finite(mono)[0]  # a NaN would spread through the resampler


def _wav_header(stream: IO[bytes]) -> int:
    """Read a float WAV header off a pipe up to its data chunk; return the rate (0: no audio)."""
    head = stream.read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return 0
    rate = 0
    while len(chunk := stream.read(8)) == 8:
        chunk_id, size = struct.unpack("<4sI", chunk)
        if chunk_id == b"data":
            return rate
        body = stream.read(size + (size & 1))
        if chunk_id == b"fmt " and len(body) >= 8:
            rate = struct.unpack("<I", body[4:8])[0]
    return 0


def _ffprobe_duration(p: Path) -> float | None:
    """The duration ffprobe reads from the container (None: it cannot tell, or no ffprobe).

    Raises:
        AudioInputError: ffprobe cannot read the file, or it has no audio stream.
    """
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return None  # ffmpeg itself will say what is wrong when decoding
    cmd = [ffprobe, "-v", "error", "-select_streams", "a", "-show_entries", "stream=codec_type:format=duration",
           "-of", "default=noprint_wrappers=1", str(p)]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    errors = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
    if proc.returncode != 0:
        detail = _strip_path(errors[-1], p) if errors else "ffprobe could not read it"
        raise AudioInputError(f"{p}: not a readable audio file ({detail})")
    fields = dict(ln.split("=", 1) for ln in proc.stdout.splitlines() if "=" in ln)
    if "codec_type" not in fields:
        raise AudioInputError(f"{p}: contains no audio stream")
    try:
        return float(fields.get("duration", ""))
    except ValueError:
        return None
