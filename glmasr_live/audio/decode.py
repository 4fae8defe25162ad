"""Whole audio files → 16 kHz mono float32, or one clear :class:`AudioInputError` line.

libsndfile (through ``soundfile``) reads wav/flac/ogg/opus/mp3 and friends; anything it does not
recognise (m4a, webm, video containers...) goes through ``ffmpeg`` when that program exists.
Channels are averaged, then the signal is resampled with soxr at its best ("VHQ") quality:
this is offline work, so quality wins over speed.

Truncated or corrupt files are errors by default, since captions of half a file look like a
complete result. ``allow_truncated=True`` keeps whatever could be decoded (recordings from a
crashed recorder).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import stat
import struct
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from glmasr_live.audio.resampler import finite
from glmasr_live.errors import AudioInputError
from glmasr_live.events import SAMPLE_RATE

log = logging.getLogger(__name__)

RESAMPLE_QUALITY = "VHQ"
"""soxr quality for whole files (offline: best quality, cost is negligible next to the model)."""

# libsndfile error codes (sndfile.h): it does not know the container or the encoding in it.
_SF_ERR_UNRECOGNISED_FORMAT = 1
_SF_ERR_UNSUPPORTED_ENCODING = 4
_SF_ERR_NOT_A_FILE = 7
"""What libsndfile's mp3 reader says of bytes that are no mp3 at all ("does not exist or is not a
regular file"): the file was checked to exist, so this means "not recognised" (ffmpeg decides)."""
NOT_RECOGNISED = (_SF_ERR_UNRECOGNISED_FORMAT, _SF_ERR_UNSUPPORTED_ENCODING, _SF_ERR_NOT_A_FILE)
# RIFF sizes that streaming writers (ffmpeg to a pipe, crashed recorders) leave in the header:
# they mean "length unknown", not "truncated".
_UNKNOWN_RIFF_SIZES = (0, 0xFFFFFFFF)


def load_audio(path: str | os.PathLike[str], *, allow_truncated: bool = False) -> np.ndarray:
    """Read a whole audio file as 16 kHz mono float32 (a new, writable, contiguous array).

    Raises:
        AudioInputError: one line naming the file: missing, a directory, unreadable, not audio,
            no samples, or truncated/corrupt (unless ``allow_truncated``).
    """
    p = Path(path)
    _check_path(p)
    try:
        audio, rate = _read_soundfile(p, allow_truncated)
    except _NotRecognised as e:
        ffmpeg = shutil.which("ffmpeg")
        if ffmpeg is None:
            raise AudioInputError(
                f"{p}: not a readable audio file ({e}; installing ffmpeg adds more formats)"
            ) from None
        audio, rate = _read_ffmpeg(ffmpeg, p, allow_truncated)
    if audio.shape[0] == 0:
        raise AudioInputError(f"{p}: contains no audio samples")
    mono = audio.mean(axis=1, dtype=np.float32) if audio.shape[1] > 1 else audio[:, 0]
    mono, _ = finite(mono)  # a NaN would spread through the resampler
    if rate != SAMPLE_RATE:
        mono = soxr.resample(mono, rate, SAMPLE_RATE, quality=RESAMPLE_QUALITY)
    return np.ascontiguousarray(mono, dtype=np.float32)


class _NotRecognised(Exception):
    """libsndfile does not know this format: worth trying ffmpeg."""


def _check_path(p: Path) -> None:
    # Checked up front so the user gets "no such file" rather than a decoder's guess.
    if not p.exists():
        raise AudioInputError(f"{p}: no such file")
    if p.is_dir():
        raise AudioInputError(f"{p}: is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise AudioInputError(f"{p}: permission denied")
    if stat.S_ISFIFO(p.stat().st_mode):
        raise AudioInputError(f"{p}: is a pipe, not a file: send raw PCM to --input - instead")
    if p.stat().st_size == 0:
        raise AudioInputError(f"{p}: is empty (0 bytes)")


def _one_line(text: str) -> str:
    # libsndfile messages look like "Error : flac decoder lost sync." and may span lines.
    return " ".join(str(text).split()).removeprefix("Error : ").rstrip(".")


def _read_soundfile(p: Path, allow_truncated: bool) -> tuple[np.ndarray, int]:
    cut_mp3 = mp3_truncation(p)  # before libsndfile opens it: its mp3 decoder warns on stderr
    if cut_mp3 and not allow_truncated:
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({cut_mp3})")
    try:
        with sf.SoundFile(str(p)) as f:
            info = f.extra_info
            rate = f.samplerate
            audio = f.read(dtype="float32", always_2d=True)
    except sf.LibsndfileError as e:
        if e.code in NOT_RECOGNISED:
            raise _NotRecognised(_one_line(e.error_string).lower()) from None
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({_one_line(e.error_string)})") from None
    except (RuntimeError, OSError) as e:  # soundfile raises plain RuntimeError for some decode errors
        raise AudioInputError(f"{p}: truncated or corrupt audio file ({_one_line(str(e))})") from None
    problem = cut_mp3 or _truncation(p, info)
    if problem:
        if not allow_truncated:
            raise AudioInputError(f"{p}: truncated or corrupt audio file ({problem})")
        log.warning("%s: %s; using the %d frames that could be read", p, problem, audio.shape[0])
    return audio, rate


def _truncation(p: Path, extra_info: str) -> str | None:
    """Why the file looks cut short, or None. libsndfile itself reads whatever is there."""
    # Ogg: the last page must carry the end-of-stream flag; a cut file has a partial last page.
    if "lacks an end-of-stream bit" in extra_info:
        return "the Ogg stream ends without its last page"
    return _riff_truncation(p)


def mp3_truncation(p: Path) -> str | None:
    """Why an MP3 file looks cut short, or None (not an MP3, or no header that tells).

    An encoder's Xing/Info (LAME, ffmpeg) or VBRI header in the first frame gives the stream's
    size in bytes. libsndfile reports the header's length and then decodes only what is there,
    so without this a cut file reads as a shorter one, silently.
    """
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(10)
        start = _id3v2_size(head)
        f.seek(start)
        frame = f.read(256)
        f.seek(max(0, size - 128))
        id3v1 = 128 if size - start >= 128 and f.read(3) == b"TAG" else 0
    declared = _mp3_stream_bytes(frame)
    present = size - start - id3v1
    if declared and present < declared:
        return f"{present} of {declared} MP3 bytes present"
    return None


def _id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of a file (0 without one)."""
    if len(head) < 10 or head[:3] != b"ID3":
        return 0
    body = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
    return 10 + body + (10 if head[5] & 0x10 else 0)  # flag 0x10: a footer follows


def _mp3_stream_bytes(frame: bytes) -> int | None:
    """The stream size a Xing/Info or VBRI header in this first MPEG layer III frame declares."""
    if len(frame) < 4 or frame[0] != 0xFF or frame[1] & 0xE6 != 0xE2:  # frame sync, layer III
        return None
    mpeg1 = frame[1] & 0x18 == 0x18
    mono = frame[3] & 0xC0 == 0xC0
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    crc = 0 if frame[1] & 0x01 else 2
    for at in {4 + side, 4 + crc + side}:  # encoders disagree on whether the CRC counts
        tag = frame[at : at + 16]
        if tag[:4] in (b"Xing", b"Info") and len(tag) == 16:
            flags = struct.unpack(">I", tag[4:8])[0]
            if flags & 0x2:  # bytes present; after the frame count when that is present too
                return int(struct.unpack(">I", tag[12:16] if flags & 0x1 else tag[8:12])[0]) or None
            return None
    vbri = frame[36:50]
    if vbri[:4] == b"VBRI" and len(vbri) == 14:
        return int(struct.unpack(">I", vbri[10:14])[0]) or None
    return None


def _riff_truncation(p: Path) -> str | None:
    """Compare a WAV file's declared data size with what is on disk."""
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        pos = 12
        block_align = 0
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"fmt " and chunk_size >= 14:
                block_align = struct.unpack("<H", f.read(14)[12:14])[0]
            if chunk_id == b"data":
                if chunk_size in _UNKNOWN_RIFF_SIZES:
                    return None
                available = size - pos - 8
                if available < chunk_size:
                    return f"{available} of {chunk_size} data bytes present"
                return None
            pos += 8 + chunk_size + (chunk_size & 1)
    # A WAV without a data chunk is an empty or cut header; block_align only says it parsed.
    return "no data chunk" if block_align else None


def _read_ffmpeg(ffmpeg: str, p: Path, allow_truncated: bool) -> tuple[np.ndarray, int]:
    # ffmpeg downmixes (-ac 1) and writes float WAV to the pipe at the native rate; soxr
    # resamples afterwards so every format goes through the same resampler.
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", "-i", str(p), "-vn", "-ac", "1"]
    cmd += ["-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError as e:
        raise AudioInputError(f"{p}: cannot run ffmpeg to decode it ({e.strerror})") from None
    errors = [line.strip() for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
    if proc.returncode != 0 or not proc.stdout:
        detail = _strip_path(errors[-1], p) if errors else "ffmpeg could not decode it"
        if "does not contain any stream" in detail or "Output file does not contain" in detail:
            raise AudioInputError(f"{p}: contains no audio stream")
        raise AudioInputError(f"{p}: not a readable audio file ({detail})")
    if errors:
        problem = f"ffmpeg: {_strip_path(errors[0], p)}"
        if not allow_truncated:
            raise AudioInputError(f"{p}: truncated or corrupt audio file ({problem})")
        log.warning("%s: %s; using what could be decoded", p, problem)
    try:
        audio, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioInputError(f"{p}: ffmpeg output unreadable ({_one_line(str(e))})") from None
    return audio, int(rate)


def _strip_path(line: str, p: Path) -> str:
    # ffmpeg prefixes messages with the file name ("x.m4a: Invalid data...") or "[mov @ 0x..] ".
    line = line.removeprefix(f"{p}: ")
    if line.startswith("[") and "] " in line:
        line = line.split("] ", 1)[1]
    return _one_line(line)
