"""One default and one range check per streaming option, whatever the source (flag, environment,
TOML) and whichever command takes it."""

from __future__ import annotations

import pytest

from glmasr_live.option_table import OPTIONS

BAD = {
    "encoder_padding": "half",
    "interval": "0",
    "agreement": "0",
    "vad_sensitivity": "1.5",
    "vad_model": "webrtc",
    "caption_gate": "maybe",
    "endpoint": "0.7",
    "context": "-1",
}


def test_every_option_has_a_bad_value_here():
    assert set(BAD) == set(OPTIONS)


def test_settings_records_take_their_defaults_from_the_table():
    from glmasr_live.asr.streaming import StreamingSettings
    from glmasr_live.audio.segmenter import SegmenterSettings
    from glmasr_live.config import PipelineSettings
    from glmasr_live.policy import PolicySettings
    from glmasr_live.replay import ReplaySettings

    p, st, seg = PipelineSettings(), StreamingSettings(), SegmenterSettings()
    assert (p.interval_s, PolicySettings().interval_s, ReplaySettings().interval_s) == (
        OPTIONS["interval"].default,
    ) * 3
    assert p.agreement == st.agreement == OPTIONS["agreement"].default
    assert p.context_s == st.context_s == OPTIONS["context"].default
    assert p.endpoint_s == seg.endpoint_s == OPTIONS["endpoint"].default
    assert p.vad_sensitivity == OPTIONS["vad_sensitivity"].default
    assert p.encoder_padding == OPTIONS["encoder_padding"].default
    assert p.caption_gate == OPTIONS["caption_gate"].default and seg.doubt == (p.caption_gate == "on")


def _live_values(argv, environ, tmp_path, toml=""):
    from glmasr_live.cli import build_parser
    from glmasr_live.commands.live import resolve, settings_from

    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    args = build_parser().parse_args([*argv, "--config", str(cfg)])
    return settings_from(resolve(args, environ))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_refused_the_same_way_from_environment_and_config_file(name, tmp_path):
    from glmasr_live.errors import ConfigError

    # Each error names where the value came from (the user may never have typed the flag),
    # then says what the table's one check says.
    var = f"GLMASR_LIVE_{name.upper()}"
    with pytest.raises(ConfigError, match=f"^{var} ") as env_err:
        _live_values([], {var: BAD[name]}, tmp_path)
    value = BAD[name] if name in ("encoder_padding", "vad_model", "caption_gate") else float(BAD[name])
    toml = f"{name.replace('_', '-')} = {value!r}".replace("'", '"')
    with pytest.raises(ConfigError, match=rf"^{name} \(config file\) ") as conf_err:
        _live_values([], {}, tmp_path, toml)
    assert "\n" not in str(env_err.value) and "\n" not in str(conf_err.value)


@pytest.mark.parametrize("command", [[], ["transcribe", "x.wav"], ["eval", "dir"]])
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_flag_refused_by_argparse_in_every_command(name, command, capsys):
    from glmasr_live.cli import build_parser

    with pytest.raises(SystemExit) as e:
        build_parser().parse_args([*command, f"{OPTIONS[name].flag}={BAD[name]}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert OPTIONS[name].flag in err


@pytest.mark.parametrize("value", ["inf", "nan", "x"])
def test_non_finite_and_non_numbers_refused(value, tmp_path):
    from glmasr_live.errors import ConfigError

    for name in ("interval", "endpoint", "context", "vad_sensitivity"):
        with pytest.raises(ConfigError, match=f"^GLMASR_LIVE_{name.upper()} "):
            _live_values([], {f"GLMASR_LIVE_{name.upper()}": value}, tmp_path)


def test_good_values_from_every_source(tmp_path):
    s = _live_values(
        ["--interval", "0.3"], {"GLMASR_LIVE_CONTEXT": "4"}, tmp_path, "endpoint = 0.1\nagreement = 3"
    )
    assert (s.interval_s, s.context_s, s.endpoint_s, s.agreement) == (0.3, 4.0, 0.1, 3)
