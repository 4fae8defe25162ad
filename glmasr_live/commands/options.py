"""Option groups shared by several subcommands (model, streaming decoder, VAD)."""

from __future__ import annotations

import argparse
from typing import Any

from glmasr_live.errors import ConfigError


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
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
    from glmasr_live.audio.segmenter import SegmenterSettings

    s = SegmenterSettings()
    parser.add_argument(
        "--endpoint",
        type=endpoint_seconds,
        default=s.endpoint_s if default else None,
        metavar="SECONDS",
        help=f"a clearly silent pause this long ends the utterance and brings its final (default "
        f"{s.endpoint_s}); 0 waits for the full {s.hangover_s} s hangover, for longer utterances",
    )


def add_context_argument(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, default: bool = True
) -> None:
    """``--context``: closed audio the streaming decoder keeps in its prompt."""
    from glmasr_live.asr_defaults import CONTEXT_S as d

    parser.add_argument(
        "--context",
        type=context_seconds,
        default=d if default else None,
        metavar="SECONDS",
        help=f"closed audio the decoder keeps in its prompt; beyond it, settled text leaves the "
        f"prompt so long utterances cost the same per step (default {d:g}; 0 keeps it all)",
    )


def context_seconds(text: str) -> float:
    from glmasr_live.asr_defaults import CONTEXT_MAX_S

    return float_between(text, 0.0, CONTEXT_MAX_S, " (0 keeps everything)")


def endpoint_seconds(text: str) -> float:
    from glmasr_live.audio.segmenter import SegmenterSettings

    return float_between(text, 0.0, SegmenterSettings().hangover_s, " (the hangover)")


def add_model_args(p: argparse.ArgumentParser, default_model: str | None = None) -> None:
    from glmasr_live.asr_defaults import DEFAULT_MODEL

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
        choices=["auto", "float32", "bfloat16", "float16", "float64"],
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
    g.add_argument(
        "--encoder-padding",
        choices=["full", "none"],
        default="full",
        help="full: pad blocks to the model's window as upstream; none: true length (faster)",
    )
    g.add_argument("--interval", type=positive_float, default=0.5, help="seconds between partial captions")
    g.add_argument("--agreement", type=int, default=2, help="LocalAgreement-n: hypotheses that must agree")
    g.add_argument(
        "--vad-sensitivity", type=unit_float, default=0.5, help="0 (strict) .. 1 (catch everything)"
    )
    add_endpoint_argument(g)
    add_context_argument(g)


def streaming_settings(args: argparse.Namespace) -> Any:
    from glmasr_live.asr.streaming import StreamingSettings

    if args.agreement < 1:
        raise ConfigError("--agreement must be at least 1")
    return StreamingSettings(
        agreement=args.agreement, encoder_padding=args.encoder_padding, context_s=args.context
    )


def segmenter_settings(args: argparse.Namespace) -> Any:
    from glmasr_live.audio.segmenter import SegmenterSettings

    return SegmenterSettings.from_sensitivity(args.vad_sensitivity, args.endpoint)
