"""The demo-model trainer's alignment supervision points at the right audio.

The trainer (``glmasr_live.devtools.training``, run by ``scripts/train_demo_model.py``; not run
by CI) guides LM attention heads to the audio tokens of the word being written and trains a word
classifier on the audio tokens, both from the exact word spans that the synthesiser knows. A
wrong span-to-token mapping would teach the model nonsense, so it is checked here on real
espeak-ng speech cut into windows the way training cuts it.
"""

from __future__ import annotations

import numpy as np
import pytest

from glmasr_live.asr.blocks import audio_token_counts, window_features
from glmasr_live.asr.tiny import build_char_tokenizer, build_processor, build_tiny_model
from glmasr_live.devtools import synth
from glmasr_live.devtools.training.batches import Batcher
from glmasr_live.devtools.training.loop import CHUNK_S, SIZES, WeightAverage
from glmasr_live.devtools.training.losses import forward_losses, use_float32_encoder_attention
from glmasr_live.devtools.training.targets import WORD_CLASSES, alignment_targets, token_word_labels
from glmasr_live.devtools.training.voices import Clip, Synthesizer, perturb_speed, render_bank

HOPS = [160, 240]  # the real model's mel hop, and the demo model's (``--hop 240``)


def _windows(audio: np.ndarray, cuts: list[int], hop: int):
    """The windows the cuts make, their audio token counts from the real processor, and the
    samples of one audio token."""
    bounds = [0, *cuts, len(audio)]
    pairs = [(a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    proc = build_processor(build_char_tokenizer(), chunk_length=6, hop_length=hop)
    feats = window_features(proc.feature_extractor, [audio[a:b] for a, b in pairs], 6 * synth.SAMPLE_RATE)
    return pairs, audio_token_counts(feats["attention_mask"].sum(-1)), 8 * hop


def _token_energy(audio: np.ndarray, pairs, counts, unit: int) -> np.ndarray:
    """RMS of the samples under every audio token, in the order the LM sees the tokens."""
    out = []
    for (a, b), n in zip(pairs, counts, strict=True):
        for k in range(n):
            lo = a + k * unit
            seg = audio[lo : min(b, lo + unit)]
            out.append(float(np.sqrt(np.mean(seg**2))) if len(seg) else 0.0)
    return np.array(out)


@pytest.mark.parametrize("hop", HOPS)
@pytest.mark.parametrize("cjk", [False, True])
def test_targets_follow_the_words_across_windows(cjk, hop):
    rng = np.random.default_rng(5)
    lang = "cmn" if cjk else "en"
    words = synth.random_words(rng, 12, cjk)
    voice = synth.Voice(lang, "m3", 150, 50)
    u = synth.word_utterance(words, voice, rng, gap_s=(0.15, 0.3), long_pause_p=0.0)
    lead = np.zeros(int(0.5 * synth.SAMPLE_RATE), np.float32)
    audio = np.concatenate([lead, u.audio])
    spans = [(s + len(lead), e + len(lead)) for s, e in u.spans]
    mid = (spans[5][1] + spans[6][0]) // 2  # a cut at a pause, then fixed 6 s cuts
    cuts = [mid, *range(mid + 6 * synth.SAMPLE_RATE, len(audio), 6 * synth.SAMPLE_RATE)]
    pairs, counts, unit = _windows(audio, cuts, hop)
    assert len(pairs) >= 2
    head, answer_start = 4, 4 + sum(counts) + 12
    text = synth.join_words(words, cjk)
    targets = alignment_targets(
        0, text, spans, pairs, counts, head, answer_start, len(text) + 1, token_samples=unit
    )
    energy = _token_energy(audio, pairs, counts, unit)
    loud = energy > 0.05 * energy.max()

    # one query per character (English: and the space after each word), in order
    queries = [q for _, q, _, _ in targets]
    assert queries == list(range(answer_start - 1, answer_start - 1 + len(queries)))
    assert len(queries) == len(text)
    # each word's keys cover speech, move forward word by word, and the lead-in silence is never a target
    firsts = []
    for _, q, lo, hi in targets:
        keys = np.arange(lo - head, hi + 1 - head)
        assert loud[keys].any(), (q, lo, hi)
        assert keys[0] >= int(0.5 * synth.SAMPLE_RATE) // unit - 1
        firsts.append(lo)
    assert firsts == sorted(firsts) and firsts[-1] > firsts[0]

    labels = token_word_labels(text, spans, pairs, counts, token_samples=unit)
    assert len(labels) == sum(counts)
    labels_arr = np.array(labels)
    # silence labels sit on quiet tokens, word labels on loud ones, in the spoken order
    assert not loud[labels_arr == 0].any()
    assert loud[labels_arr > 0].mean() > 0.9
    spoken = [WORD_CLASSES[c] for i, c in enumerate(labels) if c > 0 and (i == 0 or labels[i - 1] != c)]
    assert spoken == words


@pytest.mark.parametrize("hop", HOPS)
@pytest.mark.parametrize("cjk", [False, True])
def test_end_of_text_query_looks_at_the_trailing_silence(cjk, hop):
    rng = np.random.default_rng(7)
    words = synth.random_words(rng, 5, cjk)
    u = synth.word_utterance(words, synth.Voice("cmn" if cjk else "en", "f3", 160, 50), rng)
    tail = np.zeros(int(0.8 * synth.SAMPLE_RATE), np.float32)
    audio = np.concatenate([u.audio, tail])
    pairs, counts, unit = _windows(audio, [], hop)
    head, answer_start = 4, 4 + sum(counts) + 12
    text = synth.join_words(words, cjk)
    args = (0, text, u.spans, pairs, counts, head, answer_start, len(text) + 1)
    plain = alignment_targets(*args, token_samples=unit)
    with_eos = alignment_targets(*args, token_samples=unit, eos=True)
    assert with_eos[:-1] == plain  # the characters' targets are unchanged, one more at the end
    _, q, lo, hi = with_eos[-1]
    assert q == answer_start + len(text) - 1  # the position whose logits predict the end of text
    assert hi - head == sum(counts) - 1  # up to the last audio token
    s0, s1 = u.spans[-1]
    assert s0 <= (lo - head) * unit < s1  # starts on the last word's last token
    energy = _token_energy(audio, pairs, counts, unit)
    keys = energy[lo - head : hi + 1 - head]
    assert (keys[2:] < 0.01 * energy.max()).all() and len(keys) > 6  # then the trailing silence


@pytest.mark.parametrize("hop", HOPS)
def test_sentences_rendered_in_one_piece_get_no_word_targets(hop):
    rng = np.random.default_rng(2)
    words = synth.random_words(rng, 4, False)
    audio = synth.render(", ".join(words), synth.Voice("en", "f2", 160, 50))
    lead = np.zeros(synth.SAMPLE_RATE, np.float32)
    audio = np.concatenate([lead, audio, lead])
    spans = [(len(lead), len(audio) - len(lead))]
    pairs, counts, unit = _windows(audio, [], hop)
    text = " ".join(words)
    assert alignment_targets(0, text, spans, pairs, counts, 4, 100, len(text) + 1, token_samples=unit) == []
    labels = np.array(token_word_labels(text, spans, pairs, counts, token_samples=unit))
    lead_tokens = len(lead) // unit
    assert (labels[: lead_tokens - 1] == 0).all()  # the lead-in and the tail are silence
    assert (labels[lead_tokens + 1 : -lead_tokens - 1] == -100).all()  # the speech: no word label
    assert (labels[-lead_tokens + 1 :] == 0).all()


def test_speed_perturbation_moves_the_word_spans_with_the_audio():
    rng = np.random.default_rng(9)
    words = synth.random_words(rng, 5, False)
    u = synth.word_utterance(words, synth.Voice("en", "f1", 160, 50), rng, gap_s=(0.2, 0.3))
    clip = Clip(u.audio, u.text, u.spans, False)
    for factor in (0.9, 1.1):
        fast = perturb_speed(clip, factor)
        assert abs(len(fast.audio) - len(u.audio) / factor) < 0.01 * len(u.audio)
        assert len(fast.spans) == len(u.spans) and fast.text == u.text
        level = np.sqrt(np.mean(fast.audio**2))
        for a, b in fast.spans:  # speech inside the moved spans, silence in the moved gaps
            assert np.sqrt(np.mean(fast.audio[a:b] ** 2)) > 0.5 * level
        for (_, b), (a, _) in zip(fast.spans[:-1], fast.spans[1:], strict=True):
            gap = fast.audio[b + 80 : a - 80]
            assert np.abs(gap).max() < 0.05 * np.abs(fast.audio).max()


@pytest.mark.parametrize(("bucket", "hop"), [(0, 160), (6, 160), (6, 240)])
def test_training_batches_give_every_loss_one_label_per_audio_token(bucket, hop):
    """A real training step's batch through the real model: every window's audio tokens fill the
    prompt's placeholders, each gets a word label, unpadded windows are encoded per bucket, and
    running the LM on length groups gives the losses of one padded batch; at the real model's
    mel hop (160 samples) and at the demo model's coarser one (``--hop 240``)."""
    import torch
    from torch import nn

    rng = np.random.default_rng(3)
    bank = render_bank(rng, 2, 1, 4)
    tok = build_char_tokenizer()
    proc = build_processor(tok, chunk_length=CHUNK_S, hop_length=hop)
    model = build_tiny_model(tok, seed=0, **SIZES)
    model.model.language_model.set_attn_implementation("eager")
    batcher = Batcher(proc, Synthesizer(bank, rng, 0.3, 0.1, 0.5), rng, bucket)
    assert batcher.unit == 8 * hop and batcher.win == CHUNK_S * synth.SAMPLE_RATE
    ctc_head = nn.Linear(SIZES["audio_hidden"], len(tok) + 1)
    word_head = nn.Linear(SIZES["text_hidden"], len(WORD_CLASSES))
    seen_unpadded = False
    for _ in range(8):
        b = batcher.batch(6)
        targets = [features.shape[-1] * proc.feature_extractor.hop_length for _, features, _ in b["groups"]]
        if targets != [batcher.win]:  # a padding "none" batch
            seen_unpadded = True
            if bucket:
                step = bucket * batcher.unit
                assert len(targets) == len(set(targets))
                assert all(t % step == 0 or t == batcher.win for t in targets)
            else:
                assert len(targets) == 1  # all padded to the longest window
        n_tokens = int((b["input_ids"] == model.config.audio_token_id).sum())
        assert b["word_labels"].shape[0] == n_tokens
        assert (b["word_labels"] > 0).any() and (b["word_labels"] == 0).any()
        per_groups = []
        for groups in (1, 3):
            torch.manual_seed(0)  # the same corrupted characters
            per_groups.append(
                forward_losses(model, ctc_head, b, len(tok), 0.2, [(1, 0), (2, 0)], word_head, groups)
            )
        losses, grouped = per_groups
        assert all(torch.isfinite(x) and x > 0 for x in losses), losses
        assert torch.allclose(torch.stack(losses), torch.stack(grouped), rtol=1e-4), (losses, grouped)
    assert seen_unpadded


def test_wide_random_speakers_vary_voice_quality_and_keep_the_narrow_draws():
    """``wide`` speakers add voicing level, consonant loudness and spectral tilt lines that real
    espeak-ng obeys; without ``wide`` the same seed gives exactly the speakers of the code before
    ``wide`` existed (names are hashes of the variant files, pinned from commit 4248498), so
    ``--no-wide-voices`` reproduces the earlier runs' voice banks."""
    before = ["en+rvw2d43f7d2", "en+rvv3b9ec69a", "en+rvve1a58968", "en+rvwb5aa3ca2"]
    pinned = [
        synth.random_variant_voice(np.random.default_rng(s), "en", whisper=s % 3 == 0) for s in range(4)
    ]
    assert [v.name for v in pinned] == before
    narrow = [synth.random_variant_voice(np.random.default_rng(s), "en") for s in range(12)]
    assert not any("tone " in v.spec or "consonants " in v.spec for v in narrow)
    wide = [synth.random_variant_voice(np.random.default_rng(s), "en", wide=True) for s in range(12)]
    specs = "".join(v.spec for v in wide)
    assert all(k in specs for k in ("\nvoicing ", "\nconsonants ", "\ntone "))
    strengths = [
        int(line.split()[3]) for v in wide for line in v.spec.splitlines() if line.startswith("formant")
    ]
    assert min(strengths) < 70 and max(strengths) > 130
    # the tilt really changes the sound: same speaker, a bright and a dark tone curve
    base = "language variant\nname custom\ngender female\npitch 200 260\n"
    ratios = []
    for tone in (
        "tone 100 255 600 200 1200 30 2000 15 3000 10",
        "tone 100 10 600 10 1200 200 2000 255 3000 255",
    ):
        spec = f"{base}{tone}\n"
        voice = synth.Voice("en", f"en+{synth.CUSTOM_PREFIX}vtilt{len(ratios)}", 160, 50, spec)
        spectrum = np.abs(np.fft.rfft(synth.render("seven sixty", voice)))
        freqs = np.fft.rfftfreq(2 * (len(spectrum) - 1), 1 / synth.SAMPLE_RATE)
        ratios.append(spectrum[freqs > 2000].sum() / spectrum[freqs < 1000].sum())
    assert ratios[1] > 4 * ratios[0]


def test_weight_average_is_the_mean_of_the_weights_from_its_start_step():
    """``--average-from``: the saved weights are the mean over the steps from the start on."""
    import torch

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0, **SIZES)
    first = next(model.parameters())
    average = WeightAverage(model, start=2)
    seen = []
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
        seen.append(first.detach().clone())
        average.update(step)
    assert average.count == 3
    average.apply()
    assert torch.allclose(first, torch.stack(seen[2:]).mean(0), atol=1e-5)


@pytest.mark.parametrize("kind", ["white", "pink", "brown"])
def test_fast_noise_has_the_length_level_and_colour_of_the_exact_noise(kind):
    """Training colours its noise at a fast FFT length (``fast=True``): same length, unit RMS
    and spectral slope as the exact-length noise, for a length with a large prime factor."""
    n = 2 * 80021  # 80021 is prime: the exact-length FFT falls back to its slowest algorithm
    m = synth.fast_fft_length(n)
    assert m >= n and all(m % p for p in (7, 11, 13)) and synth.fast_fft_length(m) == m
    for k in range(n, m):
        rest = k
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        assert rest > 1, f"{k} is 5-smooth and smaller than {m}"

    def slope(x: np.ndarray) -> float:
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / synth.SAMPLE_RATE)
        bands = [(100, 200), (1600, 3200)]
        power = [spec[(f >= a) & (f < b)].mean() for a, b in bands]
        return 10 * np.log10(power[1] / power[0]) / 4  # power density: dB per octave, over 4

    exact = synth.noise(kind, n, np.random.default_rng(1))
    fast = synth.noise(kind, n, np.random.default_rng(1), fast=True)
    assert len(fast) == n and fast.dtype == np.float32
    assert np.array_equal(fast, exact) == (kind == "white")  # white noise needs no FFT
    assert abs(float(np.sqrt(np.mean(fast.astype(np.float64) ** 2))) - 1) < 1e-3
    assert abs(slope(fast) - slope(exact)) < 0.5, (slope(fast), slope(exact))
    expected = {"white": 0.0, "pink": -3.0, "brown": -6.0}[kind]
    assert abs(slope(fast) - expected) < 0.7


def test_float32_encoder_attention_matches_the_default_and_is_not_saved(tmp_path):
    """Training runs the encoder's attention in float32 under bfloat16 autocast: the encoder's
    output stays that of the default attention (to bfloat16 precision), and a checkpoint saved
    from the model loads with the default implementation."""
    import torch
    from transformers import GlmAsrForConditionalGeneration

    tok = build_char_tokenizer()
    model = build_tiny_model(tok, seed=0, **SIZES).eval()
    features = torch.randn(3, 128, 600)
    with torch.no_grad():
        reference = model.model.audio_tower(features).last_hidden_state
        use_float32_encoder_attention(model)
        assert model.model.audio_tower.config._attn_implementation == "sdpa_fp32"
        same = model.model.audio_tower(features).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model.model.audio_tower(features).last_hidden_state.float()
    assert torch.allclose(same, reference, atol=1e-5)
    assert torch.isfinite(mixed).all()
    assert (mixed - reference).abs().mean() < 0.05 * reference.abs().mean()
    model.save_pretrained(tmp_path)
    assert "sdpa_fp32" not in (tmp_path / "config.json").read_text()
    loaded = GlmAsrForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.model.audio_tower.config._attn_implementation != "sdpa_fp32"
