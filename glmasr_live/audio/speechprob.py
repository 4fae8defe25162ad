"""silero-vad's ONNX model through onnxruntime (numpy only, no torch): a learned per-chunk speech
probability, the segmenter's second opinion on music, typing and other sound that moves.

The model file comes from the ``silero-vad`` package (``silero_vad/data/silero_vad.onnx``); it is
found without importing the package (its ``__init__`` imports torch). The model takes 512-sample
16 kHz chunks, each preceded by the last 64 samples of the previous chunk (the context the
reference wrapper keeps), a recurrent state (2, 1, 128) and the sample rate; it returns the
speech probability and the new state.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from glmasr_live.events import SAMPLE_RATE

CHUNK = 512  # samples per model call at 16 kHz (32 ms)
_CONTEXT = 64


def model_path() -> Path | None:
    """The silero-vad ONNX model shipped by the ``silero-vad`` package, or None if absent."""
    try:
        spec = importlib.util.find_spec("silero_vad")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / "silero_vad.onnx"
        if path.is_file():
            return path
    return None


def unavailable_reason() -> str | None:
    """Why the learned VAD cannot run here (None: it can)."""
    if importlib.util.find_spec("onnxruntime") is None:
        return "onnxruntime is not installed (pip install onnxruntime)"
    if model_path() is None:
        return "the silero-vad package (its ONNX model) is not installed (pip install silero-vad)"
    return None


class SpeechProb:
    """Streaming speech probability: feed 16 kHz float samples in any block sizes; ``prob`` is
    the probability of the latest whole 512-sample chunk (0 before the first)."""

    _session = None  # one onnxruntime session per process, shared (it is stateless)

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self._sr = np.array(SAMPLE_RATE, np.int64)
        self.reset()

    @classmethod
    def _get_session(cls):  # noqa: ANN206 - onnxruntime's type
        if cls._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1  # one small model per stream: threads only cost here
            opts.inter_op_num_threads = 1
            opts.log_severity_level = 3
            cls._session = ort.InferenceSession(
                str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        return cls._session

    def reset(self) -> None:
        """Forget the recurrent state and the context (a new stream, or after a gap)."""
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(_CONTEXT, np.float32)
        self._pending = np.zeros(0, np.float32)
        self.prob = 0.0

    def feed(self, samples: np.ndarray) -> list[float]:
        """Samples (float, -1..1); returns the probability of each chunk they completed."""
        buf = np.concatenate([self._pending, np.asarray(samples, np.float32)])
        out = []
        whole = len(buf) // CHUNK
        for i in range(whole):
            out.append(self._run(buf[i * CHUNK : (i + 1) * CHUNK]))
        self._pending = buf[whole * CHUNK :]
        return out

    def _run(self, chunk: np.ndarray) -> float:
        x = np.concatenate([self._context, chunk])[None, :]
        prob, self._state = self._get_session().run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = chunk[-_CONTEXT:]
        self.prob = float(prob[0, 0])
        return self.prob


def probabilities(audio: np.ndarray) -> np.ndarray:
    """Per-chunk speech probabilities of a whole recording (one stream, from a fresh state)."""
    return np.array(SpeechProb().feed(audio), np.float32)


# The listeners sleep through quiet: no frame over the noise floor for ~1 s (most of a live
# stream's pauses, a muted participant, stationary noise) and the model is not run (vadbench:
# 0.44 ms per 30 ms frame on speech, 0.064 ms on noise-only files). On waking they first hear
# the last ~1 s of frames, with their state from before the sleep: the model then has the sound
# before the onset as context. The segmenter asks for the model's opinion only about frames
# near ones over the floor. Measured alternatives: a fresh state and 0.3 s of context let
# plucked chords and a drum groove through (7-9 % flagged); a fresh state and 1 s lost a short
# word after a pause (voiced -20 dBFS: 94 %).
_HOLD_FRAMES = 34
_WARM_UP_FRAMES = 34


class Listeners:
    """The segmenter's second opinion: the model on the gained frames (quiet and whispered
    speech at the level it knows) and on the frames as recorded (speech over loud music, which
    the gain, set by the music, turns down where the model hears it less); per chunk the
    higher probability counts. Both pre-emphasised: a first difference, without which
    low-frequency noise (brown, traffic) hides whispers (their probability rises 0.03 -> 0.19)."""

    def __init__(self) -> None:
        self._models = (SpeechProb(), SpeechProb())
        self._last = np.zeros(2, np.float32)  # the last gained and recorded samples
        self._quiet = _HOLD_FRAMES  # frames since the last one over the floor: asleep at first
        self._recent: list[tuple[np.ndarray, np.ndarray]] = []
        self._heard = 0  # samples heard since the start (or a gap)

    @property
    def settled(self) -> bool:
        """Whether the model has heard a second of audio since the start or a gap (its first
        chunks on a sound's onset, with nothing before it, are less reliable)."""
        return self._heard >= SAMPLE_RATE

    @property
    def awake(self) -> bool:
        return self._quiet < _HOLD_FRAMES

    def reset(self) -> None:
        """A gap: the next frame does not follow the previous one."""
        for model in self._models:
            model.reset()
        self._last[:] = 0.0
        self._quiet = _HOLD_FRAMES
        self._recent.clear()
        self._heard = 0

    def feed(self, gained: np.ndarray, recorded: np.ndarray, over: bool) -> list[float]:
        """One frame, gained and as recorded, and whether it was over the floor; returns the
        probabilities of the chunks it completed (none while asleep)."""
        self._quiet = 0 if over else self._quiet + 1
        if not self.awake:
            self._recent = [*self._recent[1 - _WARM_UP_FRAMES :], (gained, recorded)]
            return []
        out: list[float] = []
        if self._recent:  # waking up
            for g, r in self._recent:
                out += self._hear(g, r)
            self._recent.clear()
        return out + self._hear(gained, recorded)

    def _hear(self, gained: np.ndarray, recorded: np.ndarray) -> list[float]:
        one = np.diff(gained, prepend=self._last[0])
        two = np.diff(recorded, prepend=self._last[1])
        self._last[:] = gained[-1], recorded[-1]
        self._heard += len(gained)
        return list(map(max, self._models[0].feed(one), self._models[1].feed(two)))
