"""One backoff schedule for every retry the buses make: reconnects and handler retries."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["RECONNECT", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the one schedule for reconnects and handler retries.

    The exponent stops growing once the delay reaches ``maximum``, so an outage of any length
    (any number of attempts) keeps retrying at ``maximum`` instead of overflowing.
    """

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.maximum > 0 and self.multiplier >= 1):
            raise ValueError("a RetryPolicy needs initial > 0, maximum > 0 and multiplier >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter is a fraction in [0, 1)")

    @property
    def max_exponent(self) -> int:
        """The attempt from which the delay is ``maximum``: larger attempts are capped to it."""
        if self.multiplier == 1 or self.initial >= self.maximum:
            return 0
        return math.ceil(math.log(self.maximum / self.initial, self.multiplier))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based; any size)."""
        exponent = min(max(attempt, 0), self.max_exponent)
        base = min(self.maximum, self.initial * self.multiplier**exponent)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


RECONNECT = RetryPolicy(initial=0.1, maximum=5.0)
