"""The widgets' shared pieces: throttled redraws, the ticker, retry detection, escaping."""

from uuid import UUID, uuid4

from eventsource_lab.bus.handlers import Delivery
from eventsource_lab.testing import eventually
from eventsource_lab.widgets._deliveries import RetryDetector
from eventsource_lab.widgets._html import escape, short_id, table, truncate
from eventsource_lab.widgets._live import Throttle, start_ticker

from ._tutorial import OrderShipped


async def test_throttle_merges_pokes_into_one_call_per_interval():
    calls = []
    throttle = Throttle(lambda: calls.append(1), interval=0.05)
    for _ in range(100):
        throttle.poke()
    assert calls == [] and throttle.pending  # poke() only schedules
    await eventually(lambda: calls == [1])
    throttle.poke()
    assert throttle.pending
    await eventually(lambda: calls == [1, 1])


async def test_a_cancelled_throttle_does_not_call():
    calls = []
    throttle = Throttle(lambda: calls.append(1), interval=0.01)
    throttle.poke()
    throttle.cancel()
    assert not throttle.pending
    witness = []  # scheduled just after: once it ran, the cancelled call would have too
    Throttle(lambda: witness.append(1), interval=0.01).poke()
    await eventually(lambda: witness == [1])
    assert calls == []


def test_throttle_calls_at_once_without_a_loop():
    calls = []
    Throttle(lambda: calls.append(1)).poke()
    assert calls == [1]


async def test_ticker_calls_until_cancelled_and_stops_on_an_error():
    calls = []
    task = start_ticker(0.001, lambda: calls.append(1))
    await eventually(lambda: len(calls) >= 3)
    task.cancel()
    await eventually(task.done)

    def broken() -> None:
        raise RuntimeError("broken")

    failing = start_ticker(0.001, broken)
    await eventually(failing.done)
    assert not failing.cancelled() and failing.exception() is None


def test_no_ticker_without_a_loop():
    assert start_ticker(1.0, lambda: None) is None


def delivery(event_id: UUID, handlers: tuple[str, ...], failed: tuple[str, ...]) -> Delivery:
    event = OrderShipped(event_id=event_id, aggregate_id=uuid4(), tracking_number="T")
    return Delivery(event, handlers, failed)


def test_retry_detector_tells_retries_from_new_deliveries():
    detector, first, other = RetryDetector(), uuid4(), uuid4()
    assert not detector.observe(delivery(first, ("A", "B"), ("B",)))
    assert not detector.observe(delivery(other, ("A",), ()))
    assert detector.observe(delivery(first, ("B",), ("B",)))  # the failed one again
    assert detector.observe(delivery(first, ("B",), ()))  # and it recovered
    assert not detector.observe(delivery(first, ("A", "B"), ()))  # then replayed to all


def test_retry_detector_forgets_old_events():
    detector, first = RetryDetector(memory=1), uuid4()
    detector.observe(delivery(first, ("B",), ("B",)))
    detector.observe(delivery(uuid4(), ("B",), ("B",)))
    assert not detector.observe(delivery(first, ("B",), ("B",)))


def test_html_helpers_escape_and_shorten():
    assert escape("<a href='x'>&") == "&lt;a href=&#x27;x&#x27;&gt;&amp;"
    assert truncate("abcdef", 4) == "abc…" and truncate("abc", 4) == "abc"
    assert short_id(UUID("12345678-9abc-def0-1234-56789abcdef0")) == "12345678…"
    html = table(["<h>"], [["<i>safe</i>"]])
    assert "&lt;h&gt;" in html and "<i>safe</i>" in html
    assert "nothing yet" in table(["h"], [])
