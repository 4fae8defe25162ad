"""LocalAgreement-n: text that n successive hypotheses agree on becomes committed (pure).

Hypotheses are compared in units: words for Latin script, single characters for CJK (Mandarin,
Cantonese), so a commit never splits a word or a multi-byte character. Units are compared
case- and punctuation-insensitively; the committed text keeps the latest hypothesis' spelling.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from dataclasses import dataclass

from glmasr_live.events import is_cjk

_CJK_CLASS = r"\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef"
_UNIT = re.compile(rf"[{_CJK_CLASS}]|[^\s{_CJK_CLASS}]+")


def split_units(text: str) -> list[tuple[int, int]]:
    """Spans (start, end) of the comparison units of ``text``."""
    return [(m.start(), m.end()) for m in _UNIT.finditer(text)]


def unit_key(unit: str) -> str:
    """What two units must share to agree: letters and digits, case-folded, width-folded."""
    u = unicodedata.normalize("NFKC", unit).casefold()
    return "".join(
        ch for ch in u if ch.isalnum() or is_cjk(ch) and not unicodedata.category(ch).startswith("P")
    )


def agreed_prefix_units(hypotheses: list[str]) -> int:
    """How many leading units all ``hypotheses`` share."""
    if not hypotheses:
        return 0
    keyed = [[unit_key(t[a:b]) for a, b in split_units(t)] for t in hypotheses]
    n = min(len(k) for k in keyed)
    i = 0
    while i < n and all(k[i] == keyed[0][i] for k in keyed[1:]):
        i += 1
    return i


@dataclass
class LocalAgreement:
    """Keeps the last ``n`` hypotheses and says how many units of the newest are agreed.

    The caller makes every hypothesis start with the committed text (it is forced), so the
    agreed prefix only grows.
    """

    n: int = 2

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("LocalAgreement needs n >= 1")
        self._history: deque[str] = deque(maxlen=self.n)

    def reset(self) -> None:
        self._history.clear()

    def drop_units(self, k: int) -> None:
        """Forget the first ``k`` units of every kept hypothesis (the decoder retired that text
        from its prompt); a hypothesis shorter than that is forgotten."""
        kept = []
        for h in self._history:
            spans = split_units(h)
            if len(spans) >= k:
                kept.append(h[spans[k - 1][1] :].strip() if k else h)
        self._history = deque(kept, maxlen=self.n)

    def update(self, hypothesis: str) -> str:
        """Add ``hypothesis``; return its prefix (as written in it) that the last n agree on.

        The prefix ends at a unit boundary and never includes the last unit of the newest
        hypothesis while that unit may still be growing (the audio may end inside the word).
        """
        self._history.append(hypothesis)
        if len(self._history) < self.n:
            return ""
        k = agreed_prefix_units(list(self._history))
        spans = split_units(hypothesis)
        if k >= len(spans):
            k = len(spans) - 1  # the newest unit can still change as more audio arrives
        if k <= 0:
            return ""
        end = spans[k - 1][1]
        # Take trailing punctuation glued to the last agreed word with it ("two," "五。").
        return hypothesis[:end]
