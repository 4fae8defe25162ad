"""The GLM-ASR engine: loads the model and processor and runs them (torch lives in ``asr/``).

One ``AsrEngine`` is owned by one thread (the ASR worker); it is not thread-safe.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoProcessor, GlmAsrForConditionalGeneration, StoppingCriteria, StoppingCriteriaList
from transformers.utils import logging as hf_logging

from glmasr_live.asr.repetition import RepetitionGuard
from glmasr_live.asr_defaults import DEFAULT_MODEL
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
    def transcribe(self, audios: list[np.ndarray], max_new_tokens: int | None = None) -> list[Transcript]:
        """Offline: all ``audios`` (16 kHz mono float32) in one batch, exactly as upstream.

        The processor cuts each into independent windows; generation is greedy, capped by audio
        duration, and stopped early by the repetition guard (the loop is then removed).
        """
        if not audios:
            return []
        audios = [a if len(a) else np.zeros(self.hop * 8, np.float32) for a in audios]
        inputs = self.processor.apply_transcription_request(audios, prompt=self.prompt)
        inputs = inputs.to(self.device)
        inputs["input_features"] = inputs["input_features"].to(self.dtype)
        longest = max(len(a) for a in audios) / SAMPLE_RATE
        cap = max_new_tokens or self.max_new_tokens(longest)
        plen = inputs["input_ids"].shape[1]
        criteria = (
            StoppingCriteriaList([_GuardCriteria(self.guard, plen)])
            if self.settings.repetition_guard
            else None
        )
        out = self.model.generate(
            **inputs,
            do_sample=False,
            max_new_tokens=cap,
            stopping_criteria=criteria,
            pad_token_id=self.pad_id,
        )
        results = []
        for row in out[:, plen:].tolist():
            cut = next((i for i, t in enumerate(row) if t in self.eos_ids), len(row))
            ids = row[:cut]
            # A row stopped by the guard is padded on the right while the others go on.
            while ids and ids[-1] == self.pad_id:
                ids.pop()
            loop = self.guard.loop_start(ids) if self.settings.repetition_guard else None
            if loop is not None:
                ids = ids[:loop]
            results.append(Transcript(self.decode(ids), tuple(ids), loop is not None))
        return results

    def describe(self) -> str:
        dt = str(self.dtype).replace("torch.", "")
        return f"{self.model_name} on {self.device.type} ({dt})"
