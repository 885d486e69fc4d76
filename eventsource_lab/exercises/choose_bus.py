"""Exercise 6: choose a bus for five scenarios and say why (Tutorial 7's decision matrix).

A reason is graded by the concept it names, not by its length: each scenario lists what
decides it (servers, routing, surviving a crash...) as a few word stems, and a reason passes
when it names one of them. One scenario is a trap: a single server whose events must survive
a crash, where the matrix's first line alone would pick the one bus that loses them.
"""

from __future__ import annotations

import re
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


@dataclass(frozen=True)
class Scenario:
    key: str
    text: str
    best: str
    rule: str  # the decision-matrix line that decides it
    concepts: tuple[tuple[str, ...], ...]  # word stems of what decides it; a reason names one
    alternatives: dict[str, str]  # bus -> note when accepted
    wrong: dict[str, str]  # bus -> why not (a hint); "*" for any bus not listed


# What decides a scenario, as the word stems a reason names it by (matched at a word's start).
_ONE_PROCESS = ("single", "one process", "in[- ]?process", "local")
_NO_INFRA = ("no broker", "no infrastructure", "no server", "nothing to run")
_TESTS = ("test", "ci\\b", "unit")
_SPEED = ("fast", "quick", "instant", "synchron", "determin")
_SERVERS = ("servers", "instances", "nodes", "processes", "load[- ]balanc", "distribut", "share")
_MODERATE = ("moderate", "few hundred", "low volume", "small scale", "scale")
_SURVIVES = ("restart", "crash", "surviv", "durab", "persist", "disk", "redeliver", "los[est]")
_ROUTING = ("rout", "exchange", "bind", "pattern", "filter", "subset", "which events", "own queue")
_VOLUME = ("throughput", "volume", "million", "massive", "huge", "partition", "scale out")
_HISTORY = ("replay", "re-?read", "retention", "retain", "offset", "history", "log\\b", "stream")


def _names_one(reason: str, concepts: tuple[tuple[str, ...], ...]) -> bool:
    """Whether ``reason`` has a word starting with a stem of one of ``concepts`` (any case)."""
    stems = (stem for concept in concepts for stem in concept)
    return any(re.search(rf"\b{stem}", reason, re.IGNORECASE) for stem in stems)


SCENARIOS = {
    s.key: s
    for s in (
        Scenario(
            "checkout_tests",
            "the unit tests of the order projection, run on every commit on a laptop and in CI",
            "InMemoryEventBus",
            "single server, development, testing → InMemoryEventBus",
            (_TESTS, _ONE_PROCESS, _NO_INFRA, _SPEED),
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
            (_SERVERS, _MODERATE, _SURVIVES),
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
            "fulfilment_routing",
            "six teams' services each take their own share of the shop's events (billing the "
            "payments and refunds, the warehouse the shipments, audit everything) into a queue "
            "of its own, and the teams change what they receive on the broker without "
            "touching the publishers",
            "RabbitMQEventBus",
            "enterprise with complex routing → RabbitMQEventBus",
            (_ROUTING,),
            {},
            {
                "InMemoryEventBus": "six services are six processes: an in-memory bus reaches "
                "only the handlers in its own process",
                "RedisEventBus": "Redis Streams have no routing in the broker: every consumer "
                "group reads whole streams, so who gets what is decided in code, not on the "
                "broker",
                "KafkaEventBus": "Kafka routes nothing either: consumers read whole topics and "
                "filter, and a new split of the events means new topics and publishers that "
                "know them",
            },
        ),
        Scenario(
            "clickstream",
            "every click of two million users streamed to analytics, kept for weeks so new "
            "models can re-read it from the start",
            "KafkaEventBus",
            "high throughput, event streaming → KafkaEventBus",
            (_VOLUME, _HISTORY),
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
        Scenario(
            "single_server_no_loss",
            "a small shop on one server; its handlers send the order confirmations, and an "
            "order whose e-mail was not sent yet when the process crashes must still get it "
            "after the restart",
            "RedisEventBus",
            "single server, but events must survive a crash → RedisEventBus (a broker, with "
            "persistence on)",
            (_SURVIVES,),
            {
                "RabbitMQEventBus": "RabbitMQ's durable queues also keep unacknowledged "
                "messages across a crash; it is more to run than one small server needs",
            },
            {
                "InMemoryEventBus": "'single server' is only the matrix's first question: an "
                "in-memory bus keeps events in the process's memory, so a crash loses every "
                "event whose handlers had not finished. Surviving a crash needs the events "
                "outside the process, in a broker that redelivers what was not acknowledged",
                "KafkaEventBus": "Kafka would keep the events, but a cluster for one small "
                "shop is far more than the job needs",
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


def _judge(key: str, scenario: Scenario, answer: Any, notes: list[str]) -> Problem | None:
    """The problem with one answer, if any; an accepted alternative adds a note."""
    raw_bus, reason = _split(answer)
    if not raw_bus:
        return Problem(f"{key}: no bus chosen yet", f"pick one of {', '.join(BUSES)}")
    bus = _bus_name(raw_bus)
    if bus is None:
        return Problem(
            f"{key}: {raw_bus!r} is not one of the buses", f"write one of {', '.join(BUSES)}"
        )
    if bus in scenario.alternatives:
        notes.append(f"{key}: {bus} is accepted. {scenario.alternatives[bus]}.")
    elif bus != scenario.best:
        why = scenario.wrong.get(bus) or scenario.wrong.get("*", "")
        return Problem(
            f"{key}: {bus} is not the best fit. {why}",
            f"find the matrix line for it: {scenario.rule.split(' → ')[0]} → ?",
        )
    if not _names_one(reason, scenario.concepts):
        said = f"({reason!r})" if reason.strip() else "(no reason given)"
        return Problem(
            f"{key}: the bus is right, but the reason does not name what decides it {said}",
            "say which fact of the scenario makes this bus the one: how many processes, how "
            "much traffic, who gets which events, what must survive...",
        )
    return None


@exercise(NAME, "Choose a bus, and justify it", "ex06_choose_a_bus", after="07_16_choosing_a_bus")
def check_choose_a_bus(answers: dict[str, Any]) -> Feedback:
    """``answers``: scenario key -> ``(bus name, reason)``."""
    problems: list[Problem] = []
    notes: list[str] = []
    for key in answers:
        if key not in SCENARIOS:
            problems.append(
                Problem(
                    f"there is no scenario {key!r}", f"the scenarios are {', '.join(SCENARIOS)}"
                )
            )
    for key, scenario in SCENARIOS.items():
        if key not in answers:
            problems.append(Problem(f"{key}: no answer yet", "add it to the dict"))
            continue
        problem = _judge(key, scenario, answers[key], notes)
        if problem is not None:
            problems.append(problem)
    if problems:
        return failed(NAME, problems, notes)
    return passed(
        NAME,
        "Your choices follow Tutorial 7's decision matrix, read whole: tests in one process → "
        "InMemoryEventBus; several servers at moderate scale → RedisEventBus; who gets which "
        "events decided in the broker → RabbitMQEventBus; very high throughput with history "
        "to re-read → KafkaEventBus. And 'single server' is not the only question: events "
        "that must survive a crash need a broker even on one server (and an outbox relay, "
        "07.05, for a crash between saving and publishing).",
        notes,
    )
