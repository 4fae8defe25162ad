"""Option groups shared by several subcommands (model, streaming decoder, VAD)."""

from __future__ import annotations

import argparse
import math
from typing import Any

from glmasr_live.option_table import VAD_MODEL, add_option


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number: {text!r}")
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return v


def float_between(text: str, low: float, high: float, note: str = "") -> float:
    """An option value in ``[low, high]``; argparse turns the error into one line and exit 2."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not low <= v <= high:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be between {low:g} and {high:g}{note}: {text!r}")
    return v


def unit_float(text: str) -> float:
    return float_between(text, 0.0, 1.0)


def add_endpoint_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: bool = True
) -> None:
    """``--endpoint``: how soon a clearly silent pause ends an utterance (and brings its final)."""
    add_option(parser, "endpoint", default)


def add_context_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: bool = True
) -> None:
    """``--context``: closed audio the streaming decoder keeps in its prompt."""
    add_option(parser, "context", default)


DTYPES = ("auto", "float32", "bfloat16", "float16", "float64")


def add_bench_model_args(p: argparse.ArgumentParser) -> None:
    """The benchmarks' model flags: ``full`` builds the full-size architecture, random weights."""
    p.add_argument("--model", default="demo", help="demo (default), full (full-size random), hub id or path")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--dtype", default="auto", choices=DTYPES, help="auto: bfloat16 on GPU, float32 on CPU")


def add_model_args(p: argparse.ArgumentParser, default_model: str | None = None) -> None:
    from glmasr_live.asr.defaults import DEFAULT_MODEL

    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default=default_model or DEFAULT_MODEL,
        help="hub id, local directory, or 'demo' for the bundled demo model (default: %(default)s)",
    )
    g.add_argument("--device", default="auto", help="auto (CUDA, MPS, CPU), cpu, cuda, cuda:N, mps")
    g.add_argument(
        "--dtype",
        default="auto",
        choices=DTYPES,
        help="auto: bfloat16 on GPU, float32 on CPU",
    )
    g.add_argument("--prompt", default=None, help="instruction text (default: the model's own)")


def engine_settings(args: argparse.Namespace, warmup: bool = True) -> Any:
    from glmasr_live.asr.engine import EngineSettings

    return EngineSettings(
        model=args.model, device=args.device, dtype=args.dtype, prompt=args.prompt, warmup=warmup
    )


def add_streaming_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("streaming")
    for name in (
        "encoder_padding",
        "interval",
        "agreement",
        "vad_sensitivity",
        "vad_model",
        "caption_gate",
        "endpoint",
        "context",
    ):
        add_option(g, name)


def streaming_settings(args: argparse.Namespace) -> Any:
    from glmasr_live.asr.streaming import StreamingSettings

    return StreamingSettings(
        agreement=args.agreement, encoder_padding=args.encoder_padding, context_s=args.context
    )


def segmenter_settings(args: argparse.Namespace) -> Any:
    from glmasr_live.audio.segmenter import SegmenterSettings

    return SegmenterSettings.from_sensitivity(
        args.vad_sensitivity,
        args.endpoint,
        getattr(args, "vad_model", VAD_MODEL),
        getattr(args, "caption_gate", "on") == "on",
    )
