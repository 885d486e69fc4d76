"""One backoff schedule for every retry the buses make: reconnects and handler retries."""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RECONNECT", "RetryPolicy"]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: the one schedule for reconnects and handler retries."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        base = min(self.maximum, self.initial * self.multiplier**attempt)
        return base * (1 + random.uniform(-self.jitter, self.jitter))


RECONNECT = RetryPolicy(initial=0.1, maximum=5.0)
