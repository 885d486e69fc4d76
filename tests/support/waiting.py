"""The tests wait the way the library teaches: see :mod:`eventsource_lab.testing`."""

from eventsource_lab.testing import DEFAULT_TIMEOUT, Recorder, eventually

__all__ = ["DEFAULT_TIMEOUT", "Recorder", "eventually"]
