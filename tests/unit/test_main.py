"""The command line: the demo prints the tutorial's expected output exactly."""

import subprocess
import sys

# The tutorial's "Expected output" block; its indentation (lost when the tutorial was extracted
# from a web page) is the one the example's print() calls produce.
EXPECTED = """\
============================================================
Tutorial 7: Event Bus
============================================================

1. Setting up infrastructure...
   - Event store, bus, and repository initialized

2. Creating handlers and projections...

3. Subscribing to event bus...
   - Projection subscribed to 3 event types
   - Notification handler subscribed to OrderPlaced
   - Audit logger subscribed to all events

4. Creating orders...
   [Notification] Order placed by Customer 1
   [Notification] Order placed by Customer 2
   [Notification] Order placed by Customer 3
   Created 3 orders

5. Shipping an order...
   Order shipped

6. Cancelling an order...
   Order cancelled

7. Querying projection:
   Total revenue: $450.00
   Order counts: {'placed': 1, 'shipped': 1, 'cancelled': 1}

8. Notification handler:
   Notifications sent: 3

9. Audit log:
   Total events logged: 5
   - OrderPlaced on Order
   - OrderPlaced on Order
   - OrderPlaced on Order

10. Event bus statistics:
   Events published: 5
   Handlers invoked: 13
   Handler errors: 0

   Subscribers for OrderPlaced: 2
   Wildcard subscribers: 1

11. Shutting down...
   Event bus shutdown complete

============================================================
Tutorial complete!
============================================================
"""


def test_demo_prints_the_tutorials_expected_output() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == EXPECTED
    assert result.stderr == ""


def test_unknown_command_exits_with_usage() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "nope"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "invalid choice" in result.stderr
