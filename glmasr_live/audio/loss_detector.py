"""Detection of live audio lost upstream without any flag, from the monotonic clock of the blocks."""

from __future__ import annotations

from collections import deque


class SilentLossDetector:
    """Finds live audio lost without any flag: the monotonic clock ran ahead of the samples.

    PulseAudio drops a record stream's audio server-side when this process is starved of CPU
    for long (a busy machine, a long GIL hold), and PortAudio reports no overflow. The lag
    ``t_callback - frames_so_far / rate`` then jumps up and stays up. Callback jitter and
    catch-up bursts after a delay move it only briefly, so a loss is declared only when the
    lag stays ``threshold_s`` above its recent minimum for ``settle_s``; the gap is therefore
    marked up to ``settle_s`` after the place it happened. Device clock drift (~100 ppm)
    is followed by the sliding minimum and never accumulates into a false gap.
    """

    def __init__(
        self,
        rate: int,
        threshold_s: float = 0.3,
        settle_s: float = 0.5,
        window_s: float = 10.0,
        warmup_s: float = 1.0,
    ) -> None:
        self.rate = rate
        self.threshold_s, self.settle_s, self.window_s, self.warmup_s = (
            threshold_s,
            settle_s,
            window_s,
            warmup_s,
        )
        self.reset()

    def reset(self) -> None:
        """Forget the history (a new stream: its clock offset is new)."""
        self._frames = 0
        self._start: float | None = None
        self._mins: deque[tuple[float, float]] = deque()  # (time, lag), lags increasing
        self._since: float | None = None
        self._min_excess = 0.0

    def account(self, frames: int) -> None:
        """Frames already marked as a gap for a known reason (drops, overflow)."""
        self._frames += frames

    def block(self, t_end: float, frames: int) -> int:
        """One block that ended (was delivered) at ``t_end``; returns frames silently lost."""
        if self._start is None:
            self._start = t_end
        self._frames += frames
        lag = t_end - self._frames / self.rate
        while self._mins and self._mins[0][0] < t_end - self.window_s:
            self._mins.popleft()
        if t_end - self._start < self.warmup_s:  # stream start-up bursts: not a baseline
            return 0
        excess = lag - self._mins[0][1] if self._mins else 0.0
        if excess > self.threshold_s:
            if self._since is None:
                self._since, self._min_excess = t_end, excess
            self._min_excess = min(self._min_excess, excess)
            if t_end - self._since < self.settle_s:
                return 0
            lost = round(self._min_excess * self.rate)
            self._frames += lost
            lag -= lost / self.rate
            self._since = None
        else:
            lost = 0
            self._since = None
        while self._mins and self._mins[-1][1] >= lag:
            self._mins.pop()
        self._mins.append((t_end, lag))
        return lost
