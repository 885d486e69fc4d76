"""The whole test session, tests and notebooks alike: no process it starts may outlive it."""

pytest_plugins = ["tests.support.leftovers"]
