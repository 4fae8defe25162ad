"""silero-vad (its ONNX model, through the package's own wrapper), the VAD benchmark's comparison (torch lives in ``asr/``); optional dependency."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def silero_speech() -> Callable[[np.ndarray], list[tuple[int, int]]] | None:
    """A function audio -> speech (start, end) samples by silero-vad's defaults; None if absent."""
    try:
        import torch
        from silero_vad import get_speech_timestamps, load_silero_vad
    except ImportError:
        return None
    model = load_silero_vad(onnx=True)  # the ONNX model, as the segmenter runs it

    def speech(audio: np.ndarray) -> list[tuple[int, int]]:
        with torch.no_grad():
            stamps = get_speech_timestamps(torch.from_numpy(np.ascontiguousarray(audio)), model)
        return [(int(s["start"]), int(s["end"])) for s in stamps]

    return speech
