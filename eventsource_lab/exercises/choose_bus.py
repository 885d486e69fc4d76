"""Exercise 6: choose a bus for three scenarios, and say why (the spec's decision matrix)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._core import Feedback, Problem, exercise, failed, passed

NAME = "choose_a_bus"
BUSES = ("InMemoryEventBus", "RedisEventBus", "RabbitMQEventBus", "KafkaEventBus")
_ALIASES = {
    "memory": "InMemoryEventBus",
    "inmemory": "InMemoryEventBus",
    "redis": "RedisEventBus",
    "rabbitmq": "RabbitMQEventBus",
    "rabbit": "RabbitMQEventBus",
    "kafka": "KafkaEventBus",
}
MIN_WORDS = 4


@dataclass(frozen=True)
class Scenario:
    key: str
    text: str
    best: str
    rule: str  # the decision-matrix line that decides it
    keywords: tuple[str, ...]  # words a good reason tends to use
    alternatives: dict[str, str]  # bus -> note when accepted
    wrong: dict[str, str]  # bus -> why not (a hint)


SCENARIOS = {
    s.key: s
    for s in (
        Scenario(
            "checkout_tests",
            "the unit tests of the order projection, run on every commit on a laptop and in CI",
            "InMemoryEventBus",
            "single server, development, testing → InMemoryEventBus",
            ("test", "fast", "simple", "single", "infrastructure", "no broker", "process"),
            {},
            {
                "*": "tests want no infrastructure and instant, synchronous delivery: the "
                "matrix says single server / testing → InMemoryEventBus"
            },
        ),
        Scenario(
            "shop_cluster",
            "the shop's API on three servers behind a load balancer, a few hundred orders an "
            "hour; projections must keep up when a server restarts",
            "RedisEventBus",
            "multiple servers, moderate scale → RedisEventBus",
            ("server", "instance", "process", "moderate", "scale", "restart", "durab", "group"),
            {
                "RabbitMQEventBus": "RabbitMQ works here too, but it is more infrastructure "
                "than this needs: nothing asks for complex routing, which is when the matrix "
                "picks it",
            },
            {
                "InMemoryEventBus": "an in-memory bus lives in one process: the other two "
                "servers would never see the events, and a restart loses them",
                "KafkaEventBus": "Kafka would work, but a cluster for a few hundred events an "
                "hour is a lot to run: the matrix keeps it for high throughput and streaming",
            },
        ),
        Scenario(
            "clickstream",
            "every click of two million users streamed to analytics, kept for weeks so new "
            "models can re-read it from the start",
            "KafkaEventBus",
            "high throughput, event streaming → KafkaEventBus",
            ("throughput", "stream", "replay", "offset", "volume", "retention", "partition"),
            {},
            {
                "InMemoryEventBus": "nothing in one process survives or scales to this",
                "RedisEventBus": "Redis Streams fit moderate scale; millions of events kept "
                "for weeks and re-read from any offset is Kafka's strength (very high "
                "throughput, retention, replay from an offset)",
                "RabbitMQEventBus": "a RabbitMQ queue forgets a message once it is consumed; "
                "re-reading weeks of history from the start needs Kafka's retained log",
            },
        ),
    )
}


def _bus_name(value: Any) -> str | None:
    text = str(value or "").strip()
    if text in BUSES:
        return text
    key = text.lower().replace("eventbus", "").replace("_", "").replace("-", "").strip()
    return _ALIASES.get(key)


def _split(answer: Any) -> tuple[Any, str]:
    if isinstance(answer, dict):
        return answer.get("bus"), str(answer.get("reason") or "")
    if isinstance(answer, (tuple, list)) and len(answer) == 2:
        return answer[0], str(answer[1] or "")
    return answer, ""


@exercise(NAME, "Choose a bus, and justify it", "ex06_choose_a_bus", after="07_16_choosing_a_bus")
def check_choose_a_bus(answers: dict[str, Any]) -> Feedback:
    """``answers``: scenario key -> ``(bus name, reason)``."""
    problems: list[Problem] = []
    notes: list[str] = []
    for key in answers:
        if key not in SCENARIOS:
            problems.append(
                Problem(
                    f"there is no scenario {key!r}",
                    f"the scenarios are {', '.join(SCENARIOS)}",
                )
            )
    for key, scenario in SCENARIOS.items():
        if key not in answers:
            problems.append(Problem(f"{key}: no answer yet", "add it to the dict"))
            continue
        raw_bus, reason = _split(answers[key])
        bus = _bus_name(raw_bus)
        if not raw_bus:
            problems.append(Problem(f"{key}: no bus chosen yet", f"pick one of {', '.join(BUSES)}"))
            continue
        if bus is None:
            problems.append(
                Problem(
                    f"{key}: {raw_bus!r} is not one of the buses",
                    f"write one of {', '.join(BUSES)}",
                )
            )
            continue
        if bus == scenario.best:
            pass
        elif bus in scenario.alternatives:
            notes.append(f"{key}: {bus} is accepted. {scenario.alternatives[bus]}.")
        else:
            why = scenario.wrong.get(bus) or scenario.wrong.get("*", "")
            problems.append(
                Problem(
                    f"{key}: {bus} is not the best fit. {why}",
                    f"find the matrix line for it: {scenario.rule.split(' → ')[0]} → ?",
                )
            )
            continue
        if len(reason.split()) < MIN_WORDS:
            problems.append(
                Problem(
                    f"{key}: the bus is right, but the reason is missing or too short ({reason!r})",
                    "say in a sentence what about the scenario decides it (servers, scale, "
                    "infrastructure, replay...)",
                )
            )
        elif not any(word in reason.lower() for word in scenario.keywords):
            notes.append(
                f"{key}: your reason does not name what the matrix decides on here: "
                f"{scenario.rule}."
            )
    if problems:
        return failed(NAME, problems, notes)
    return passed(
        NAME,
        "Your choices follow the spec's decision matrix: one process → InMemoryEventBus; "
        "several servers at moderate scale → RedisEventBus; very high throughput with history "
        "to re-read → KafkaEventBus (RabbitMQ is the pick when routing gets complex).",
        notes,
    )
