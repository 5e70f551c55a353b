"""Dead letters in the worker's log, not only in its metrics: a summary line at most every ``interval_s``.

A record sent to dead-letter is counted by reason; the first one after a quiet interval is logged at
once, the ones after it are summed into the next line, so a flood of bad input costs one WARNING
line per interval, e.g. ``dead letters: 1,204 more to interest.deadletter (schema 1,200, late 4);
logged at most every 10 s, all of them counted in istream_dead_letters_total``.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)
INTERVAL_S = 10.0


class DeadLetterLog:
    def __init__(self, topic: str, interval_s: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.topic = topic
        self._interval_s = interval_s
        self._clock = clock
        self._pending: Counter[str] = Counter()
        self._last_line = clock() - interval_s

    def add(self, reasons: Mapping[str, int]) -> None:
        """Count dead letters by reason; logs a line when the interval since the last one has passed."""
        self._pending.update({reason: n for reason, n in reasons.items() if n})
        self.tick()

    def tick(self) -> None:
        """Log what was counted since the last line once the interval has passed (call it now and then)."""
        now = self._clock()
        if self._pending and now - self._last_line >= self._interval_s:
            self._write(now)

    def flush(self) -> None:
        """Log what is still counted (at shutdown)."""
        if self._pending:
            self._write(self._clock())

    def _write(self, now: float) -> None:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in self._pending.most_common())
        log.warning(
            "dead letters: %s more to %s (%s); logged at most every %.0f s, all of them counted in "
            "istream_dead_letters_total",
            f"{self._pending.total():,}",
            self.topic,
            reasons,
            self._interval_s,
        )
        self._pending.clear()
        self._last_line = now
