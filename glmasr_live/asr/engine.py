"""The GLM-ASR engine: loads the model and processor and runs them (torch lives in ``asr/``).

One ``AsrEngine`` is owned by one thread (the ASR worker); it is not thread-safe.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoProcessor, GlmAsrForConditionalGeneration, StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging as hf_logging

from glmasr_live.asr.defaults import DEFAULT_MODEL
from glmasr_live.asr.repetition import RepetitionGuard
from glmasr_live.errors import ConfigError, ModelLoadError
from glmasr_live.events import SAMPLE_RATE

log = logging.getLogger(__name__)

DEMO_MODEL_DIR = Path(__file__).resolve().parents[2] / "assets" / "demo-model"
DTYPES = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
    "float64": torch.float64,
}


@dataclass(frozen=True)
class EngineSettings:
    """How to load and run the model.

    Fields:
        model: hub id, local directory, or ``demo`` for the bundled demo checkpoint.
        device: ``auto`` (CUDA, then MPS, then CPU), or ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
        dtype: ``auto`` (bfloat16 on GPU, float32 on CPU) or one of float32/bfloat16/float16/float64.
        max_tokens_per_second: cap on generated tokens per second of audio (plus 8); ``None``
            picks 30 for character tokenizers and 12 for the real model's BPE vocabulary.
        repetition_guard: stop generation when the output starts looping and drop the loop.
        warmup: run one short inference after loading so the first caption is not slow.
        prompt: the instruction text; ``None`` keeps the processor's default.
        threads: CPU threads for torch; ``None``: one for small models (under 50 M parameters:
            their ops are too small to split, and spinning worker threads fight the capture and
            segmenter threads; measured 20x faster on a busy 2-core machine), torch's default
            otherwise.
    """

    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    max_tokens_per_second: float | None = None
    repetition_guard: bool = True
    warmup: bool = True
    prompt: str | None = None
    threads: int | None = None


def parameter_count(model: Any) -> int:
    """Parameters, shared weights (a tied head) counted once."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def resolve_model_path(model: str) -> str:
    if model == "demo":
        if not (DEMO_MODEL_DIR / "config.json").exists():
            raise ModelLoadError(f"the bundled demo model is missing from {DEMO_MODEL_DIR}")
        return str(DEMO_MODEL_DIR)
    return model


def pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available")
    return dev


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    if name == "auto":
        return torch.bfloat16 if device.type in ("cuda", "mps") else torch.float32
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r} (use auto, {', '.join(DTYPES)})")
    return DTYPES[name]


def _hub_reachable(timeout: float = 3.0) -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")


def load_model_and_processor(model: str, device: torch.device, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load from a local directory or the hub. Never hangs on an unreachable hub."""
    path = resolve_model_path(model)
    local = Path(path).expanduser()
    if local.exists():
        if not (local / "config.json").exists():
            raise ModelLoadError(f"{local} is not a model directory (no config.json)")
        kwargs: dict[str, Any] = {"local_files_only": True}
        path = str(local)
    elif path.startswith((".", "/", "~")) or path.count("/") != 1:
        raise ModelLoadError(f"model {path!r} is neither a local directory nor a hub id like {DEFAULT_MODEL}")
    else:
        kwargs = {}
    try:
        return _load(path, device, dtype, local_files_only=True)
    except (OSError, ValueError) as first:
        if kwargs.get("local_files_only"):
            raise ModelLoadError(f"cannot load model from {path}: {first}") from first
    hint = (
        f"model {path} is not in the local cache and the hub cannot be reached; "
        f"download it on a connected machine (huggingface-cli download {path}) or pass --model PATH "
        "to a local copy (--model demo runs the bundled demo model)"
    )
    if _offline():
        raise ModelLoadError(hint + " [HF_HUB_OFFLINE is set]")
    if not _hub_reachable():
        raise ModelLoadError(hint)
    try:
        return _load(path, device, dtype, local_files_only=False)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"cannot load model {path}: {e}") from e


def _load(path: str, device: torch.device, dtype: torch.dtype, local_files_only: bool) -> tuple[Any, Any]:
    if local_files_only:
        hf_logging.disable_progress_bar()  # nothing to download: no bars on stderr
    else:
        hf_logging.enable_progress_bar()
    processor = AutoProcessor.from_pretrained(path, local_files_only=local_files_only)
    model = GlmAsrForConditionalGeneration.from_pretrained(
        path, dtype=dtype, local_files_only=local_files_only
    )
    model.to(device)  # type: ignore[arg-type]
    model.eval()
    return model, processor


class _GuardCriteria(StoppingCriteria):
    def __init__(self, guard: RepetitionGuard, prompt_len: int):
        self.guard = guard
        self.prompt_len = prompt_len

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        rows = input_ids[:, self.prompt_len :].tolist()
        done = [self.guard.loop_start(r) is not None for r in rows]
        return torch.tensor(done, device=input_ids.device)  # type: ignore[return-value]


class _RowCapCriteria(StoppingCriteria):
    """Stops each row at its own token cap (the batch runs to the largest)."""

    def __init__(self, caps: list[int], prompt_len: int):
        self.caps = caps
        self.prompt_len = prompt_len

    def __call__(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
    ) -> torch.BoolTensor:
        made = input_ids.shape[1] - self.prompt_len
        return torch.tensor([made >= c for c in self.caps], device=input_ids.device)  # type: ignore[return-value]


def _free_memory(device: torch.device) -> float:
    """Bytes free for activations: the GPU's free memory, or the machine's available RAM."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return float(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


@dataclass(frozen=True)
class Transcript:
    """An offline transcription: text, the generated ids, and whether a loop was cut off."""

    text: str
    token_ids: tuple[int, ...]
    loop_removed: bool = False


class AsrEngine:
    """Loads GLM-ASR once and transcribes; also exposes the pieces the streaming decoder needs."""

    def __init__(self, settings: EngineSettings | None = None, *, model: Any = None, processor: Any = None):
        self.settings = settings or EngineSettings()
        self.device = pick_device(self.settings.device)
        self.dtype = pick_dtype(self.settings.dtype, self.device)
        t0 = time.perf_counter()
        if model is None or processor is None:
            model, processor = load_model_and_processor(self.settings.model, self.device, self.dtype)
        else:
            model = model.to(self.device, self.dtype).eval()
        self.model = model
        self.processor = processor
        self.parameters = parameter_count(model)
        if self.device.type == "cpu":
            threads = self.settings.threads
            if threads is None and self.parameters < 50_000_000:
                threads = 1
            if threads:
                torch.set_num_threads(threads)
        self.tokenizer = processor.tokenizer
        self.load_seconds = time.perf_counter() - t0
        fe = processor.feature_extractor
        self.window_seconds = float(fe.chunk_length)  # read from the processor, never assumed
        self.window_samples = int(round(self.window_seconds * SAMPLE_RATE))
        self.hop = int(fe.hop_length)
        self.audio_token_id = int(model.config.audio_token_id)
        eos = model.generation_config.eos_token_id or model.config.text_config.eos_token_id
        self.eos_ids = frozenset([eos] if isinstance(eos, int) else list(eos or []))
        self.pad_id = self.tokenizer.pad_token_id
        tps = self.settings.max_tokens_per_second
        if tps is None:
            tps = 30.0 if len(self.tokenizer) < 1000 else 12.0
        self.tokens_per_second = tps
        self.guard = RepetitionGuard()
        self.prompt = self.settings.prompt or processor.default_transcription_prompt
        if self.settings.warmup:
            self.transcribe([np.zeros(SAMPLE_RATE // 2, np.float32)])

    @property
    def model_name(self) -> str:
        return self.settings.model

    def max_new_tokens(self, seconds: float) -> int:
        return int(seconds * self.tokens_per_second) + 8

    def decode(self, ids: list[int] | tuple[int, ...]) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True)).strip()

    @torch.inference_mode()
    def transcribe(
        self, audios: list[np.ndarray], max_new_tokens: int | Sequence[int] | None = None
    ) -> list[Transcript]:
        """Offline: all ``audios`` (16 kHz mono float32) in one batch, exactly as upstream.

        The processor cuts each into independent windows; generation is greedy, capped by audio
        duration, and stopped early by the repetition guard (the loop is then removed).
        ``max_new_tokens``: one cap for all (``None``: from the longest item, as the seed did), or
        one per item, so an item's text never depends on what it is batched with.
        """
        if not audios:
            return []
        audios = [a if len(a) else np.zeros(self.hop * 8, np.float32) for a in audios]
        inputs = self.processor.apply_transcription_request(audios, prompt=self.prompt)
        inputs = inputs.to(self.device)
        inputs["input_features"] = inputs["input_features"].to(self.dtype)
        caps = self._caps(audios, max_new_tokens)
        plen = inputs["input_ids"].shape[1]
        stops: list[StoppingCriteria] = []
        if self.settings.repetition_guard:
            stops.append(_GuardCriteria(self.guard, plen))
        if len(set(caps)) > 1:
            stops.append(_RowCapCriteria(caps, plen))
        out = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=max(caps),
            stopping_criteria=StoppingCriteriaList(stops) if stops else None,
            pad_token_id=self.pad_id,
        )
        return [self._result(row[:cap]) for row, cap in zip(out[:, plen:].tolist(), caps, strict=True)]

    def _caps(self, audios: list[np.ndarray], max_new_tokens: int | Sequence[int] | None) -> list[int]:
        if max_new_tokens is None:
            longest = max(len(a) for a in audios) / SAMPLE_RATE
            return [self.max_new_tokens(longest)] * len(audios)
        if isinstance(max_new_tokens, int):
            return [max_new_tokens] * len(audios)
        caps = [int(c) for c in max_new_tokens]
        if len(caps) != len(audios) or min(caps) < 1:
            raise ValueError(f"{len(caps)} token caps for {len(audios)} audios (each at least 1)")
        return caps

    def _result(self, row: list[int]) -> Transcript:
        cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
        ids = row[:cut]
        # A row stopped by the guard is padded on the right while the others go on.
        while ids and ids[-1] == self.pad_id:
            ids.pop()
        loop = self.guard.loop_start(ids) if self.settings.repetition_guard else None
        if loop is not None:
            ids = ids[:loop]
        return Transcript(self.decode(ids), tuple(ids), loop is not None)

    def whole_limit_seconds(self) -> float:
        """The longest audio one prompt can take without losing any of it.

        Two limits, the tighter wins: the processor keeps at most ``max_audio_len`` seconds in
        whole windows (it truncates the rest with only a warning), and the audio tokens, the
        prompt and the token cap must fit in the language model's positions.
        """
        fe = self.processor.feature_extractor
        windows = int(getattr(self.processor, "max_audio_len", 655) // fe.chunk_length)
        frames = torch.tensor([int(fe.nb_max_frames)])
        per_window = int(self.processor._get_audio_token_length(frames)[0])
        positions = int(getattr(self.model.config.text_config, "max_position_embeddings", 0) or 0)
        probe = self.processor.apply_transcription_request([np.zeros(self.hop * 8, np.float32)],
                                                           prompt=self.prompt)  # fmt: skip
        overhead = int(probe["input_ids"].shape[1]) - per_window  # prompt text around the audio
        limit = windows * self.window_seconds
        if positions:
            per_second = per_window / self.window_seconds + self.tokens_per_second
            limit = min(limit, (positions - overhead - 8) / per_second)
        return max(0.0, limit)

    def batch_size_for_memory(self, window_seconds: float | None = None) -> int:
        """How many windows to run at once: half the free memory over one window's cost.

        One window's cost is its key/value cache (audio tokens, prompt and token cap, every
        layer) plus the encoder's activations (~16 hidden-size vectors per frame), at the
        model's dtype. Free memory is the GPU's free memory on CUDA, else available RAM.
        Capped at 32 on a GPU and 8 on a CPU (where a bigger batch hardly runs faster).
        """
        seconds = window_seconds or self.window_seconds
        cfg = self.model.config
        text, audio = cfg.text_config, cfg.audio_config
        heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        tokens = seconds * (12.5 + self.tokens_per_second) + 64
        width = torch.finfo(self.dtype).bits // 8
        kv = 2 * text.num_hidden_layers * heads * head_dim * tokens * width
        frames = seconds * SAMPLE_RATE / self.hop
        encoder = 16 * frames * audio.hidden_size * width
        free = _free_memory(self.device)
        cap = 32 if self.device.type == "cuda" else 8
        return int(max(1, min(cap, 0.5 * free // max(kv + encoder, 1))))

    def describe(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return f"{self.model_name} on {self.device.type} ({dt})"
