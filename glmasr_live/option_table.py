"""The table of the streaming options: one default and one range check per option.

The live command (flags, ``GLMASR_LIVE_*`` and the TOML file), ``transcribe``, ``eval``,
``bench``, ``bench-streams`` and ``vad`` take these options, and the settings records
(``SegmenterSettings``, ``StreamingSettings``, ``PolicySettings``, ``PipelineSettings``) take
their defaults from here. A value from any source goes through the same ``parse``. No numpy,
torch or webrtcvad here: ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

INTERVAL_S = 0.5
"""Seconds between partial steps of a stream (the pacing in ``policy.py``)."""
AGREEMENT = 2
"""LocalAgreement-n: successive hypotheses that must agree before text is committed."""
VAD_SENSITIVITY = 0.5
ENDPOINT_S = 0.2
"""A clearly silent pause this long ends an utterance and brings its final."""
HANGOVER_S = 0.5
"""Non-speech that must pass before an utterance closes (the longest ``--endpoint``)."""
CONTEXT_S = 10.0
"""Closed audio (seconds) the streaming decoder keeps in its prompt before settled text leaves it."""
CONTEXT_MAX_S = 3600.0
ENCODER_PADDINGS = ("full", "none")
VAD_MODELS = ("silero", "silero-frames", "none")
VAD_MODEL = "silero"
"""The learned model confirms each utterance (``SegmenterSettings.confirm``)."""
SWITCH = ("on", "off")


def _float_in(
    low: float, high: float | None, note: str = "", open_low: bool = False
) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {value!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number: {value!r}")
        if not ((v > low if open_low else v >= low) and (high is None or v <= high)):
            if high is None:
                raise ValueError(f"must be > {low:g}: {value!r}")
            raise ValueError(f"must be between {low:g} and {high:g}{note}: {value!r}")
        return v

    return check


def _int_at_least(low: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        try:
            v = int(str(value))
        except ValueError:
            raise ValueError(f"not a whole number: {value!r}") from None
        if v < low:
            raise ValueError(f"must be at least {low}: {value!r}")
        return v

    return check


def _choice(choices: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if str(value) not in choices:
            raise ValueError(f"choose from {', '.join(choices)}: {value!r}")
        return str(value)

    return check


@dataclass(frozen=True)
class Option:
    """``name`` is the flag without dashes (underscores: the config key); ``check`` converts a
    value from any source and refuses one out of range with ``ValueError``."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    help: str
    metavar: str | None = None
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


OPTIONS: dict[str, Option] = {
    o.name: o
    for o in (
        Option(
            "encoder_padding", "full", _choice(ENCODER_PADDINGS),
            "full: pad blocks to the model's window as upstream (what it was trained on); none: "
            "true length, faster, an approximation (see docs/eval.md)", choices=ENCODER_PADDINGS,
        ),
        Option("interval", INTERVAL_S, _float_in(0.0, None, open_low=True),
               f"seconds between partial captions (default {INTERVAL_S:g})", "SECONDS"),
        Option("agreement", AGREEMENT, _int_at_least(1),
               f"LocalAgreement-n: hypotheses that must agree (default {AGREEMENT})", "N"),
        Option("vad_sensitivity", VAD_SENSITIVITY, _float_in(0.0, 1.0),
               f"0 (strict) .. 1 (catch everything), default {VAD_SENSITIVITY:g}", "0..1"),
        Option(
            "vad_model", VAD_MODEL, _choice(VAD_MODELS),
            "silero (default): silero-vad's model confirms each utterance, so music, typing and other "
            "moving sound open none; silero-frames: it judges every frame instead (costs some whispered "
            "speech); none: the segmenter's own tests only (docs/segmenter.md)",
            choices=VAD_MODELS,
        ),
        Option(
            "caption_gate", "on", _choice(SWITCH),
            "on: hide a hypothesis when the segmenter doubts the sound is speech and the model "
            "doubts its words (music, typing; docs/segmenter.md); off: show every hypothesis",
            choices=SWITCH,
        ),
        Option(
            "endpoint", ENDPOINT_S, _float_in(0.0, HANGOVER_S, " (the hangover)"),
            f"a clearly silent pause this long ends the utterance and brings its final (default "
            f"{ENDPOINT_S:g}); 0 waits for the full {HANGOVER_S:g} s hangover, for longer utterances",
            "SECONDS",
        ),
        Option(
            "context", CONTEXT_S, _float_in(0.0, CONTEXT_MAX_S, " (0 keeps everything)"),
            f"closed audio the decoder keeps in its prompt; beyond it, settled text leaves the "
            f"prompt so long utterances cost the same per step (default {CONTEXT_S:g}; 0 keeps it all)",
            "SECONDS",
        ),
    )
}  # fmt: skip


def parse(name: str, value: Any, source: str | None = None) -> Any:
    """``value`` (a flag's text, an environment string, a TOML value) checked; ConfigError if
    bad, naming ``source`` (say ``GLMASR_LIVE_INTERVAL``) or else the flag."""
    from glmasr_live.errors import ConfigError

    opt = OPTIONS[name]
    try:
        return opt.check(value)
    except ValueError as e:
        raise ConfigError(f"{source or opt.flag} {e}") from None


def argparse_type(name: str) -> Callable[[str], Any]:
    check = OPTIONS[name].check

    def convert(text: str) -> Any:
        try:
            return check(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return convert


def add_option(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup, name: str, default: bool = True
) -> None:
    """The option's flag; ``default=False`` leaves it None when absent (the live command then
    falls back to the environment and the config file)."""
    opt = OPTIONS[name]
    parser.add_argument(
        opt.flag,
        type=argparse_type(name),
        default=opt.default if default else None,
        metavar=opt.metavar,
        choices=opt.choices,
        help=opt.help,
    )
