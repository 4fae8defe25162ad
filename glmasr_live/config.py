"""Settings of a live session, and how flags, a TOML file and GLMASR_LIVE_* variables combine.

Precedence: command-line flags > environment (``GLMASR_LIVE_MODEL=demo``) > config file
(``--config PATH``, else ``$XDG_CONFIG_HOME/glmasr-live/config.toml`` when it exists) > defaults.
Keys are the long flag names with dashes or underscores: ``model = "demo"``, ``no-tui = true``,
``transcript = ["talk.srt", "talk.jsonl"]``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from glmasr_live.asr.defaults import DEFAULT_MODEL
from glmasr_live.errors import ConfigError
from glmasr_live.option_table import AGREEMENT, CONTEXT_S, ENDPOINT_S, INTERVAL_S, OPTIONS, VAD_SENSITIVITY

ENV_PREFIX = "GLMASR_LIVE_"


@dataclass(frozen=True)
class PipelineSettings:
    """Everything a live session runs with.

    Fields:
        input: None for the microphone, a file path, or ``-`` for raw PCM on stdin.
        input_device: microphone name (substring) or index.
        realtime: pace a file input in real time (as if it were a microphone).
        stdin_format / stdin_rate / stdin_channels: raw PCM layout for ``input='-'``.
        model, device, dtype, prompt: the model (see EngineSettings).
        encoder_padding, agreement, interval_s: the streaming decoder (see StreamingSettings).
        vad_sensitivity: 0 (strict) .. 1 (catch everything), see SegmenterSettings.
        vad_model: ``none`` or ``silero`` (the segmenter's learned test, ``--vad-model``).
        caption_gate: ``on`` or ``off`` (``--caption-gate``, see ``gate.py``).
        endpoint_s: a clearly silent pause this long ends an utterance (its final comes at
            once); 0 waits for the segmenter's full hangover. See SegmenterSettings.
        context_s: closed audio the streaming decoder keeps in its prompt; 0 keeps the whole
            utterance (see StreamingSettings.context_s).
        ws: ``HOST:PORT`` of the caption server, or None for no server.
        ws_token: token subscribers must present (required when binding a non-loopback host).
        transcripts: transcript files; the format follows the suffix (.jsonl .srt .vtt .txt).
        max_lag_s: when the model falls this far behind the audio, partials are skipped.
        ring_seconds: audio kept in memory for the model (utterance pre-roll and backlog).
    """

    input: str | None = None
    input_device: str | None = None
    realtime: bool = False
    stdin_format: str = "s16le"
    stdin_rate: int = 16000
    stdin_channels: int = 1
    model: str = DEFAULT_MODEL
    device: str = "auto"
    dtype: str = "auto"
    prompt: str | None = None
    encoder_padding: str = OPTIONS["encoder_padding"].default
    agreement: int = AGREEMENT
    interval_s: float = INTERVAL_S
    vad_sensitivity: float = VAD_SENSITIVITY
    vad_model: str = OPTIONS["vad_model"].default
    caption_gate: str = OPTIONS["caption_gate"].default
    endpoint_s: float = ENDPOINT_S
    context_s: float = CONTEXT_S
    ws: str | None = "127.0.0.1:8765"
    ws_token: str | None = None
    transcripts: tuple[str, ...] = ()
    max_lag_s: float = 3.0
    ring_seconds: float = 120.0
    extra: dict[str, Any] = field(default_factory=dict)

    def ws_host_port(self) -> tuple[str, int] | None:
        if not self.ws:
            return None
        host, sep, port = self.ws.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError(f"--ws {self.ws!r}: expected HOST:PORT, e.g. 127.0.0.1:8765")
        if ":" in host and not (host.startswith("[") and host.endswith("]")):
            raise ConfigError(f"--ws {self.ws!r}: an IPv6 address goes in brackets, e.g. [::1]:8765")
        return (host.strip("[]") or "127.0.0.1"), int(port)


def default_config_path(name: str = "config.toml") -> Path:
    """``$XDG_CONFIG_HOME/glmasr-live/NAME``: the live command's ``config.toml``, serve's ``serve.toml``."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "glmasr-live" / name


def load_config_file(path: Path | None, required: bool) -> dict[str, Any]:
    """Keys of a TOML config file with dashes turned into underscores."""
    path = path or default_config_path()
    if not path.exists():
        if required:
            raise ConfigError(f"config file {path} does not exist")
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"config file {path}: {e}") from e
    return {k.replace("-", "_"): v for k, v in data.items()}


def environment_values(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = os.environ if environ is None else environ
    return {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def coerce(name: str, value: Any, default: Any) -> Any:
    """Convert a config or environment value to the type of the flag's default."""
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(value)
        if isinstance(default, int) and not isinstance(default, bool):
            return int(value)
        if isinstance(default, float):
            return float(value)
        if isinstance(default, list):
            if isinstance(value, list):
                return [str(v) for v in value]
            return [v for v in str(value).split(os.pathsep) if v]
    except (TypeError, ValueError):
        raise ConfigError(f"{name} = {value!r}: expected {type(default).__name__}") from None
    return value if value is None else str(value)
