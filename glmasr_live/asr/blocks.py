"""Audio blocks for the streaming decoder: encoding blocks as independent windows, the audio
token arithmetic, and where to cut (the latest pause, or the quietest point)."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch

from glmasr_live.asr.engine import AsrEngine
from glmasr_live.events import SAMPLE_RATE

Padding = Literal["full", "none"]


def encode_blocks(engine: AsrEngine, blocks: list[np.ndarray], padding: Padding) -> list[torch.Tensor]:
    """Audio tokens of each block, each encoded as an independent window.

    With ``full`` padding every block is one window of the processor's length, so all go
    through the encoder in one call. At true length (``none``) a block must not see another's
    padding (the encoder's attention has no mask), so one call per padded length: blocks of the
    same length (in 80 ms units) still share a call."""
    if not blocks:
        return []
    unit = 8 * engine.hop  # 8 mel frames: conv stride 2 then a 4-frame merge stay whole
    if padding == "full":
        return _encode(engine, blocks, engine.window_samples)
    targets = [min(engine.window_samples, max(unit, -(-len(b) // unit) * unit)) for b in blocks]
    out: list[torch.Tensor | None] = [None] * len(blocks)
    for target in sorted(set(targets)):
        idx = [i for i, t in enumerate(targets) if t == target]
        for i, toks in zip(idx, _encode(engine, [blocks[i] for i in idx], target), strict=True):
            out[i] = toks
    return [t for t in out if t is not None]


def _encode(engine: AsrEngine, blocks: list[np.ndarray], target: int) -> list[torch.Tensor]:
    safe = [b if len(b) else np.zeros(1, np.float32) for b in blocks]
    feats = window_features(engine.processor.feature_extractor, safe, target)
    mask = feats["attention_mask"].to(engine.device)
    for i, b in enumerate(blocks):
        if not len(b):
            mask[i] = 0
    x = feats["input_features"].to(engine.device, engine.dtype)
    out = engine.model.get_audio_features(x, mask, return_dict=True).pooler_output
    return list(torch.split(out, audio_token_counts(mask.sum(-1))))


def window_features(fe: Any, windows: list[np.ndarray], target: int) -> Any:
    """Mel features of independently encoded windows, each padded (or cut) to ``target`` samples,
    with the attention mask of its valid frames. Shared with the demo model's training."""
    return fe(
        windows,
        sampling_rate=SAMPLE_RATE,
        padding="max_length",
        max_length=target,
        truncation=True,
        return_attention_mask=True,
        return_tensors="pt",
    )


def audio_token_counts(frames: torch.Tensor) -> list[int]:
    """Audio tokens per window from its valid mel frames (conv k3 s1, conv k3 s2, merge 4),
    the same arithmetic as ``GlmAsrModel.get_audio_features``."""
    n = (frames + 2 - 2 - 1) // 1 + 1
    n = (n + 2 - 2 - 1) // 2 + 1
    t = (n - 4) // 4 + 1
    return [max(0, int(v)) for v in t.tolist()]


def find_pause(audio: np.ndarray, min_start: int, max_end: int, pause_s: float) -> int | None:
    """Middle of the latest quiet stretch of ``pause_s`` within audio[min_start:max_end], or None.

    Quiet is relative: 20 ms frames more than 25 dB below the loudest frame of the span (and
    within 6 dB of the quietest), so it works for whispered and loud speech alike.
    """
    hop = SAMPLE_RATE // 50
    seg = audio[min_start:max_end]
    n = len(seg) // hop
    need = max(1, int(round(pause_s * 50)))
    if n < need + 2:
        return None
    frames = seg[: n * hop].reshape(n, hop).astype(np.float64)
    db = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    threshold = min(db.max() - 25.0, db.min() + 6.0) if db.max() - db.min() > 12 else None
    if threshold is None:
        return None
    quiet = db <= threshold
    run = 0
    for i in range(n - 1, -1, -1):
        run = run + 1 if quiet[i] else 0
        if run >= need:
            j = i
            while j > 0 and quiet[j - 1]:
                j -= 1
            k = i + run
            while k < n and quiet[k]:
                k += 1
            return min_start + ((j + k) // 2) * hop
    return None


def quietest_point(audio: np.ndarray, lo: int, hi: int) -> int:
    """Sample in [lo, hi) at the centre of the quietest 100 ms (forced cut of an over-long block)."""
    hop = SAMPLE_RATE // 100
    seg = audio[lo:hi]
    n = len(seg) // hop
    if n < 10:
        return hi
    e = np.convolve(np.mean(seg[: n * hop].reshape(n, hop) ** 2, axis=1), np.ones(10), "valid")
    return lo + (int(np.argmin(e)) + 5) * hop
