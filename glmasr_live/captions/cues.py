"""Subtitle cues from timed text: the usual conventions for SRT and WebVTT.

A cue has at most ``max_lines`` lines of at most ``max_line_cells`` display cells (CJK
characters and other wide ones count 2, combining marks 0) and stays 1 to 7 s on screen. A
cue never spans two pieces (utterances: a pause, or the model's window, lies between them).
Inside a piece the text is cut where a reader expects it, in this order: after a sentence
(``.?!`` and their CJK forms), after a clause (``,;:``...), at a pause, between any two words;
the cuts are chosen together over the piece (a shortest path: each cue costs one, plus the
weakness of the cut that ends it, plus a penalty under 1 s), so no word is left alone at the end.

Times inside a piece are estimated, since the model gives none: the piece's text is laid
along the stretches of it that sound like speech (``Segment.speech``: loud 30 ms frames),
each word taking a share proportional to its syllables (vowel groups; one per CJK character,
one per digit). Pauses inside the piece get no words, so a cut at a pause lands in it.
Measured against espeak-ng word times: see docs (``glmasr-live``'s offline benchmark).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from glmasr_live.captions.transcripts import _escape, _timestamp
from glmasr_live.events import CaptionEvent, is_cjk

_SENTENCE_END = tuple(".?!…。？！")
_CLAUSE_END = tuple(",;:，、；：—")
_SNAP_S = 0.1  # a word edge this close to a pause moves into it
_VOWELS = re.compile(r"[aeiouyàáâäèéêëìíîïòóôöùúûüæøå]+", re.IGNORECASE)


@dataclass(frozen=True)
class CueSettings:
    """Fields: ``max_line_cells`` per line, ``max_lines`` per cue, ``min_s``/``max_s`` on screen."""

    max_line_cells: int = 42
    max_lines: int = 2
    min_s: float = 1.0
    max_s: float = 7.0


@dataclass(frozen=True, slots=True)
class Cue:
    start: float
    end: float
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


class TimedText(Protocol):
    """A piece's text and times (``pieces.Segment`` is one); ``speech`` may be empty."""

    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...

    @property
    def text(self) -> str: ...

    @property
    def speech(self) -> tuple[tuple[float, float], ...]: ...


@dataclass(frozen=True, slots=True)
class Unit:
    """A word (or one CJK character) with its estimated time; ``sep`` is what goes before it."""

    text: str
    sep: str
    start: float
    end: float
    cells: int


def cells(text: str) -> int:
    """Display width in terminal cells: wide and fullwidth characters 2, combining marks 0."""
    n = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        n += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return n


def syllables(word: str) -> int:
    """A syllable estimate: one per CJK character and per digit, vowel groups otherwise (0 for
    punctuation alone)."""
    counted = [ch.isdigit() or (is_cjk(ch) and ch.isalnum()) for ch in word]
    n = sum(counted)
    rest = "".join(ch for ch, c in zip(word, counted, strict=True) if not c)
    if any(ch.isalpha() for ch in rest):
        n += max(1, len(_VOWELS.findall(rest)))
    return n


# ---------------------------------------------------------------------------- words and times


def _words(text: str, limit: int) -> list[tuple[str, str]]:
    """(separator, word) pairs: whitespace words, CJK characters one by one, punctuation kept
    on the word before it, and a word wider than a line cut into line-wide parts."""
    out: list[tuple[str, str]] = []
    for token in text.replace("-->", "->").split():
        sep = " " if out else ""
        for part in _split_cjk(token):
            if out and not any(ch.isalnum() for ch in part):
                out[-1] = (out[-1][0], out[-1][1] + part)  # punctuation stays with its word
            else:
                out.append((sep, part))
                sep = ""
    return [(s if k == 0 else "", w[k : k + limit]) for s, w in out for k in range(0, len(w), limit)]


def _split_cjk(token: str) -> list[str]:
    """A token's CJK letters one by one, the runs of anything else between them whole."""
    parts, run = [], ""
    for ch in token:
        if is_cjk(ch) and ch.isalnum():
            parts += [run, ch] if run else [ch]
            run = ""
        else:
            run += ch
    return parts + [run] if run else parts


def _along(spans: Sequence[tuple[float, float]], at: float, start: bool) -> float:
    """The time ``at`` seconds into the concatenated ``spans`` (a ``start`` on the boundary of
    two spans goes to the later one, an end to the earlier)."""
    for k, (a, b) in enumerate(spans):
        if at < b - a - 1e-9 or (not start and at <= b - a + 1e-9):
            t = a + max(at, 0.0)
            # No word starts in the last moment before a pause, nor ends just after one.
            if start and b - t < _SNAP_S and k + 1 < len(spans):
                return spans[k + 1][0]
            if not start and t - a < _SNAP_S and k > 0:
                return spans[k - 1][1]
            return t
        at -= b - a
    return spans[-1][1]


def units(piece: TimedText, limit: int = 42) -> list[Unit]:
    """The piece's words, each timed by its share of syllables along the speech stretches."""
    words = _words(piece.text, limit)
    if not words:
        return []
    spans = [(max(a, piece.start), min(b, piece.end)) for a, b in piece.speech]
    spans = [(a, b) for a, b in spans if b > a] or [(piece.start, max(piece.end, piece.start + 0.01))]
    total = sum(b - a for a, b in spans)
    weights = [max(syllables(w), 0.25) for _, w in words]
    scale = total / sum(weights)
    out, done = [], 0.0
    for (sep, w), wt in zip(words, weights, strict=True):
        start = _along(spans, done * scale, True)
        done += wt
        out.append(Unit(w, sep, round(start, 3), round(_along(spans, done * scale, False), 3), cells(w)))
    return out


# ---------------------------------------------------------------------------- cutting


def _cut_cost(left: Unit, right: Unit) -> float:
    """How bad a cue break between two units is: 0 after a sentence, 2 between plain words."""
    if left.text.endswith(_SENTENCE_END):
        return 0.0
    if left.text.endswith(_CLAUSE_END):
        return 0.5
    pause = right.start - left.end
    if pause >= 0.5:
        return 0.7
    if pause >= 0.2:
        return 1.2
    return 2.0


def _lines(us: Sequence[Unit], s: CueSettings) -> tuple[str, ...] | None:
    """The units as at most ``max_lines`` lines that fit, cut where reading is easiest, or None."""
    width = sum(u.cells + len(u.sep) for u in us) - len(us[0].sep)
    if width <= s.max_line_cells:
        return ("".join(u.sep + u.text for u in us).strip(),)
    if s.max_lines < 2 or len(us) < 2:
        return None
    best: tuple[float, int] | None = None
    first = 0
    for m in range(1, len(us)):
        first += us[m - 1].cells + (len(us[m - 1].sep) if m > 1 else 0)
        second = width - first - len(us[m].sep)
        if first > s.max_line_cells:
            break
        if second <= s.max_line_cells:
            cost = abs(first - second) / s.max_line_cells + _cut_cost(us[m - 1], us[m]) / 4
            best = min(best or (cost, m), (cost, m))
    if best is None:
        return None
    m = best[1]
    top = "".join(u.sep + u.text for u in us[:m]).strip()
    return (top, "".join(u.sep + u.text for u in us[m:]).strip())


def _cues_of_piece(us: list[Unit], s: CueSettings) -> list[Cue]:
    """The cheapest way to cut one piece's units into cues that fit (shortest path)."""
    n = len(us)
    best: list[tuple[float, int]] = [(0.0, 0)] + [(float("inf"), 0)] * n
    for k in range(1, n + 1):
        for i in range(k - 1, -1, -1):
            fits = _lines(us[i:k], s) is not None and us[k - 1].end - us[i].start <= s.max_s
            if not fits and i < k - 1:
                break  # a longer cue fits even less
            cost = 1.0 + (_cut_cost(us[k - 1], us[k]) if k < n else 0.0)
            if us[k - 1].end - us[i].start < s.min_s:
                cost += 1.0
            if best[i][0] + cost < best[k][0]:
                best[k] = (best[i][0] + cost, i)
    cuts, k = [], n
    while k > 0:
        cuts.append((best[k][1], k))
        k = best[k][1]
    out = []
    for i, k in reversed(cuts):
        lines = _lines(us[i:k], s) or ("".join(u.sep + u.text for u in us[i:k]).strip(),)
        out.append(Cue(us[i].start, us[k - 1].end, lines))
    return out


def _on_screen(cues: list[Cue], s: CueSettings) -> list[Cue]:
    """Every cue shown ``min_s`` to ``max_s``; a cue that must grow pushes the next one later."""
    out: list[Cue] = []
    for c in cues:
        start = max(c.start, out[-1].end) if out else c.start
        end = min(max(c.end, start + s.min_s), start + s.max_s)
        out.append(Cue(round(start, 3), round(end, 3), c.lines))
    return out


def make_cues(pieces: Iterable[TimedText], settings: CueSettings | None = None) -> list[Cue]:
    """Subtitle cues for a recording's pieces (in time order)."""
    s = settings or CueSettings()
    cues: list[Cue] = []
    for p in sorted(pieces, key=lambda p: p.start):
        us = units(p, s.max_line_cells)
        if us:
            cues += _cues_of_piece(us, s)
    return _on_screen(cues, s)


@dataclass(frozen=True, slots=True)
class _Final:
    start: float
    end: float
    text: str
    speech: tuple[tuple[float, float], ...] = ()


def cues_from_finals(finals: Iterable[CaptionEvent], settings: CueSettings | None = None) -> list[Cue]:
    """Cues from caption finals (no speech stretches: words spread evenly over each final)."""
    return make_cues([_Final(e.start, e.end, e.text) for e in finals if e.text.strip()], settings)


def render_srt(cues: Sequence[Cue]) -> str:
    return "\n".join(
        f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text}\n"
        for i, c in enumerate(cues, start=1)
    )


def render_vtt(cues: Sequence[Cue]) -> str:
    body = "".join(
        f"\n{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{_escape(c.text)}\n" for c in cues
    )
    return "WEBVTT\n" + body
