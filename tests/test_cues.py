"""Subtitle cues: display cells, the 2 x 42 and 1-7 s limits, natural cuts, time estimates."""

from __future__ import annotations

import numpy as np
import pytest

from glmasr_live.captions.cues import (
    CueSettings,
    cells,
    cues_from_finals,
    make_cues,
    render_srt,
    render_vtt,
    syllables,
    units,
)
from glmasr_live.devtools.synth import EN_WORDS
from glmasr_live.events import CaptionEvent
from glmasr_live.pieces import Segment, speech_spans

LIMITS = CueSettings()


def check_limits(cues, s: CueSettings = LIMITS) -> None:
    for c in cues:
        assert 1 <= len(c.lines) <= s.max_lines, c
        assert all(0 < cells(line) <= s.max_line_cells for line in c.lines), c
        assert s.min_s - 1e-6 <= c.end - c.start <= s.max_s + 1e-6, c
    assert all(a.end <= b.start + 1e-9 for a, b in zip(cues, cues[1:], strict=False))


def test_cells_count_cjk_and_fullwidth_as_two_and_combining_marks_as_none():
    assert cells("hello") == 5
    assert cells("你好") == 4
    assert cells("ＡＢ") == 4  # fullwidth forms
    assert cells("e\u0301") == 1  # e + combining acute
    assert cells("一二 ok") == 7


def test_syllables():
    assert syllables("seven") == 2
    assert syllables("一") == 1
    assert syllables("2024") == 4
    assert syllables(",") == 0
    assert syllables("strength") == 1


@pytest.mark.parametrize("seed", range(6))
def test_random_long_pieces_obey_every_limit_and_keep_every_word(seed):
    rng = np.random.default_rng(seed)
    segs, t = [], 0.0
    for i in range(12):
        n = int(rng.integers(1, 60))
        words = [EN_WORDS[int(k)] for k in rng.integers(0, len(EN_WORDS), n)]
        for k in range(3, n, 7):
            words[k] += str(rng.choice([".", ",", ""]))
        dur = float(rng.uniform(0.2, 30.0))
        segs.append(Segment(i, round(t, 3), round(t + dur, 3), " ".join(words)))
        t += dur + float(rng.uniform(0.0, 2.0))
    cues = make_cues(segs)
    check_limits(cues)
    assert " ".join(" ".join(c.lines) for c in cues).split() == " ".join(s.text for s in segs).split()


def test_cjk_text_is_cut_by_cells_between_characters():
    text = "一二三四五六七八九零" * 5  # 50 characters, 100 cells: two cues at least
    cues = make_cues([Segment(0, 0.0, 12.0, text)])
    check_limits(cues)
    assert "".join("".join(c.lines) for c in cues) == text
    assert all(cells(line) <= 42 for c in cues for line in c.lines)
    assert len(cues) >= 2


def test_mixed_script_keeps_spaces_only_where_the_text_had_them():
    cues = make_cues([Segment(0, 0.0, 3.0, "hello 一二三 world")])
    assert cues[0].lines == ("hello 一二三 world",)


def test_cuts_prefer_sentence_ends_then_clauses():
    text = "one two three four five six seven eight. nine zero one two three four five six seven eight nine"
    cues = make_cues([Segment(0, 0.0, 6.5, text)])
    check_limits(cues)
    assert cues[0].lines[-1].endswith("eight.")
    clause = "one two three four five six, seven eight nine zero one two three four five six seven eight"
    cues = make_cues([Segment(0, 0.0, 9.0, clause)])
    assert any(c.lines[-1].endswith("six,") for c in cues[:-1]), cues


def test_a_cue_never_spans_two_pieces_and_short_ones_are_held_a_second():
    segs = [Segment(0, 0.0, 0.3, "yes"), Segment(1, 0.5, 0.9, "no"), Segment(2, 5.0, 6.0, "stop")]
    cues = make_cues(segs)
    assert [c.lines for c in cues] == [("yes",), ("no",), ("stop",)]
    check_limits(cues)
    assert cues[1].start >= cues[0].end


def test_word_times_follow_the_speech_not_the_pause():
    # 1 s of speech, 2 s of silence, 1 s of speech: two words of one syllable each
    sr = 16000
    rng = np.random.default_rng(0)
    clip = np.concatenate([rng.standard_normal(sr) * 0.1, np.zeros(2 * sr), rng.standard_normal(sr) * 0.1])
    seg = Segment(0, 10.0, 14.0, "yes no", speech=speech_spans(clip.astype(np.float32), 10.0))
    first, second = units(seg)
    assert first.start == pytest.approx(10.0, abs=0.05) and first.end == pytest.approx(11.0, abs=0.05)
    assert second.start == pytest.approx(13.0, abs=0.05) and second.end == pytest.approx(14.0, abs=0.05)


def test_srt_and_vtt_parse_with_their_libraries():
    import srt
    import webvtt

    segs = [Segment(0, 0.5, 8.0, "hello <world> & one two three four five six seven eight nine zero one two"),
            Segment(1, 9.0, 10.0, "a --> b")]  # fmt: skip
    cues = make_cues(segs)
    parsed = list(srt.parse(render_srt(cues)))
    assert [p.content for p in parsed] == [c.text for c in cues]
    captions = webvtt.from_string(render_vtt(cues)).captions
    assert len(captions) == len(cues)
    assert "&lt;world&gt;" in render_vtt(cues) and "-->" not in "".join(c.text for c in cues)


def test_cues_from_finals():
    ev = CaptionEvent("final", 0, 0, 1.0, 3.0, "open the blue door", "", "open the blue door", 3.0, 0.0)
    (cue,) = cues_from_finals([ev])
    assert cue.start == 1.0 and cue.end == 3.0 and cue.lines == ("open the blue door",)
