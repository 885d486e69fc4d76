"""The whole test session, tests and notebooks alike: no teardown may hang, and no process it
starts may outlive it."""

pytest_plugins = ["tests.support.hangs", "tests.support.leftovers"]
