"""The check() API and each check, on the starter and solution cells taken from the notebooks.

A cell runs in a fresh module namespace per test (the spec's events come from
``eventsource_lab.demo``, so nothing is registered twice).
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import types
from pathlib import Path

import pytest

from eventsource_lab.demo import OrderPlaced
from eventsource_lab.exercises import (
    EXERCISES,
    Feedback,
    PendingCheck,
    Problem,
    check,
    choose_bus,
)
from eventsource_lab.exercises.runner import CHECK_TAG, STARTER_TAG, code_cells

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


async def namespace(name: str, solution: bool) -> dict:
    """The notebook's code cells up to the check cell, run in a fresh module namespace."""
    folder = "solutions" if solution else "exercises"
    module = types.ModuleType(f"exercise_{name}")
    for tags, source in code_cells(NOTEBOOKS / folder / f"{name}.ipynb"):
        if CHECK_TAG in tags:
            break
        code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, module.__dict__)
        if inspect.iscoroutine(result):
            await result
    return module.__dict__


def test_every_notebook_has_one_starter_and_one_check_cell() -> None:
    for exercise in EXERCISES.values():
        tags = [t for t, _ in code_cells(NOTEBOOKS / "exercises" / f"{exercise.notebook}.ipynb")]
        assert sum(STARTER_TAG in t for t in tags) == 1
        assert sum(CHECK_TAG in t for t in tags) == 1


# -- the API -----------------------------------------------------------------------------------


def test_each_exercise_follows_a_course_notebook_that_exists() -> None:
    for exercise in EXERCISES.values():
        assert (NOTEBOOKS / f"{exercise.after}.ipynb").exists(), (exercise.name, exercise.after)
        assert (NOTEBOOKS / "exercises" / f"{exercise.notebook}.ipynb").exists(), exercise.name


def test_unknown_exercise_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="projection"):
        check("nope")


def test_async_check_is_a_pending_check_that_says_to_await_it() -> None:
    pending = check("background_shutdown", None)
    assert isinstance(pending, PendingCheck)
    assert "await check('background_shutdown'" in repr(pending)


def test_feedback_text_and_html() -> None:
    bad = Feedback("x", False, problems=(Problem("it is <wrong>", "do better"),))
    assert not bad
    assert "Not yet (x): 1 thing to fix" in repr(bad) and "Hint: do better" in repr(bad)
    assert "&lt;wrong&gt;" in bad._repr_html_()
    good = Feedback("x", True, why="because", notes=("a note",))
    assert good and "Well done" in repr(good) and "Note: a note" in repr(good)
    assert "because" in good._repr_html_()


async def test_an_exception_in_the_answer_becomes_feedback() -> None:
    class Broken:
        def __init__(self) -> None:
            raise KeyError("boom")

    feedback = await check("idempotent_handler", Broken, redis=False)
    assert not feedback
    assert "raised KeyError" in feedback.message and "Hint:" in feedback.message


def test_an_unknown_scenario_is_named() -> None:
    feedback = check("choose_a_bus", {"nonsense": ("redis", "")})
    assert "there is no scenario 'nonsense'" in feedback.message


# -- each exercise: starter fails with a specific message, solution passes ---------------------


async def test_projection() -> None:
    starter = await namespace("ex01_projection", solution=False)
    feedback = await check("projection", starter["OrderSummaryProjection"])
    assert not feedback
    assert "does not declare OrderCancelled" in feedback.message
    assert "order_counts['cancelled'] is 0" in feedback.message
    solution = await namespace("ex01_projection", solution=True)
    assert await check("projection", solution["OrderSummaryProjection"])


async def test_wildcard_audit() -> None:
    starter = await namespace("ex02_wildcard_audit", solution=False)
    feedback = await check("wildcard_audit", starter["AuditLog"], starter["attach"])
    assert not feedback
    assert "no wildcard subscription" in feedback.message
    assert "received 1 of 4 events" in feedback.message
    solution = await namespace("ex02_wildcard_audit", solution=True)
    assert await check("wildcard_audit", solution["AuditLog"], solution["attach"])


async def test_wildcard_audit_with_wrong_entries() -> None:
    solution = await namespace("ex02_wildcard_audit", solution=True)

    class TypesOnly(solution["AuditLog"]):
        async def handle(self, event: object) -> None:
            self.entries.append(event.event_type)

    feedback = await check("wildcard_audit", TypesOnly, solution["attach"])
    assert "(event_type, aggregate_id) tuples" in feedback.message


async def test_idempotent_handler_in_memory() -> None:
    starter = await namespace("ex03_idempotent_handler", solution=False)
    feedback = await check("idempotent_handler", starter["RevenueProjection"], redis=False)
    assert not feedback and "counted twice" in feedback.message
    solution = await namespace("ex03_idempotent_handler", solution=True)
    feedback = await check("idempotent_handler", solution["RevenueProjection"], redis=False)
    assert feedback and not feedback.notes


async def test_idempotent_handler_deduplicating_on_content_is_caught() -> None:
    class ByCustomer:
        def __init__(self) -> None:
            self.total_revenue, self.order_count, self.seen = 0.0, 0, set()

        async def handle(self, event: object) -> None:
            if event.customer_name not in self.seen:
                self.seen.add(event.customer_name)
                self.total_revenue += event.total_amount
                self.order_count += 1

    feedback = await check("idempotent_handler", ByCustomer, redis=False)
    assert "deduplicate on event.event_id" in feedback.message


@pytest.mark.redis
async def test_idempotent_handler_on_redis(redis_broker, monkeypatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_REDIS_URL", redis_broker.url)
    solution = await namespace("ex03_idempotent_handler", solution=True)
    feedback = await check("idempotent_handler", solution["RevenueProjection"])
    assert feedback and "on Redis too" in feedback.notes[0]


async def test_idempotent_handler_without_redis_skips_with_a_note(monkeypatch) -> None:
    from eventsource_lab.errors import BrokerUnavailableError
    from eventsource_lab.exercises import idempotent

    async def no_redis(kind: str, mode: str = "auto") -> object:
        raise BrokerUnavailableError(kind, ["url: not set"], "install redis")

    monkeypatch.setattr(idempotent.brokers, "astart", no_redis)
    solution = await namespace("ex03_idempotent_handler", solution=True)
    feedback = await check("idempotent_handler", solution["RevenueProjection"])
    assert feedback and "Redis part was skipped" in feedback.notes[0]


async def test_background_shutdown() -> None:
    starter = await namespace("ex04_background_shutdown", solution=False)
    feedback = await check("background_shutdown", starter["publish_orders"])
    assert not feedback and "without shutting the bus down" in feedback.message
    solution = await namespace("ex04_background_shutdown", solution=True)
    assert await check("background_shutdown", solution["publish_orders"])


async def test_background_shutdown_with_too_short_a_timeout_or_inline() -> None:
    async def hasty(bus, events) -> None:
        for event in events:
            await bus.publish([event], background=True)
        await bus.shutdown(timeout=0)

    feedback = await check("background_shutdown", hasty)
    assert "shutdown(timeout=0)" in feedback.message
    assert "background_tasks_cancelled is 20" in feedback.message

    async def inline(bus, events) -> None:
        await bus.publish(events)
        await bus.shutdown()

    feedback = await check("background_shutdown", inline)
    assert "background_tasks_created is 0" in feedback.message


async def test_background_shutdown_waiting_without_shutdown_is_told_so_consistently() -> None:
    async def polls(bus, events) -> None:
        for event in events:
            await bus.publish([event], background=True)
        for _ in range(1000):  # a learner's wait: until the stats say every task ended
            if bus.get_stats()["background_tasks_completed"] == len(events):
                break
            await asyncio.sleep(0.01)

    feedback = await check("background_shutdown", polls)
    assert not feedback
    assert "all 20 e-mails were sent" in feedback.message
    assert "without calling bus.shutdown()" in feedback.message
    assert "still running" not in feedback.message and "unsent" not in feedback.message


@pytest.mark.redis
async def test_dlq_replay(redis_broker, monkeypatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_REDIS_URL", redis_broker.url)
    starter = await namespace("ex05_dlq_replay", solution=False)
    scenario = starter["scenario"]
    feedback = await check("dlq_replay", scenario, starter["labels"], starter["replay"])
    assert not feedback and "still raises IndexError" in feedback.message
    assert "the old ShippingLabels is still subscribed" in feedback.message
    assert "split()[-1]" not in feedback.message  # the first hint does not give the fix
    assert len(await scenario.bus.get_dlq_messages()) == 1  # nothing replayed into old code

    solution = await namespace("ex05_dlq_replay", solution=True)
    fixed = solution["FixedShippingLabels"]()
    scenario.bus.subscribe(OrderPlaced, fixed)  # fixed, but the old one is still on the bus
    feedback = await check("dlq_replay", scenario, fixed, solution["replay"])
    assert not feedback and "still raises" not in feedback.message
    assert "the old ShippingLabels is still subscribed" in feedback.message
    assert len(await scenario.bus.get_dlq_messages()) == 1

    async def no_replay(bus) -> None:
        pass

    scenario = solution["scenario"]
    feedback = await check("dlq_replay", scenario, solution["labels"], no_replay)
    assert "1 message(s) are still in the DLQ" in feedback.message
    feedback = await check("dlq_replay", scenario, solution["labels"], solution["replay"])
    assert feedback, feedback.message
    assert await scenario.bus.get_dlq_messages() == []
    again = await check("dlq_replay", scenario, solution["labels"], solution["replay"])
    assert again, f"a second run after a pass must pass too: {again.message}"
    await starter["scenario"].close()
    await scenario.close()


async def test_choose_a_bus() -> None:
    starter = await namespace("ex06_choose_a_bus", solution=False)
    feedback = check("choose_a_bus", starter["answers"])
    assert not feedback and "shop_cluster: no bus chosen yet" in feedback.message
    solution = await namespace("ex06_choose_a_bus", solution=True)
    assert check("choose_a_bus", solution["answers"])


def test_choose_a_bus_alternatives_wrong_picks_and_reasons_graded_by_concept() -> None:
    answers = {
        "checkout_tests": ("memory", "tests"),  # one word, and it names what decides it
        "shop_cluster": ("rabbitmq", "several servers need to share the events reliably"),
        "fulfilment_routing": ("RabbitMQ", "per-team routing on the broker"),
        "clickstream": ("kafka", "huge throughput and replay from an offset"),
        "single_server_no_loss": ("redis", "a crash must not lose an e-mail"),
    }
    feedback = check("choose_a_bus", answers)
    assert feedback, feedback.message
    assert "shop_cluster: RabbitMQEventBus is accepted" in feedback.notes[0]

    wordy = "because it is a very good and popular choice that many teams like to use"
    feedback = check("choose_a_bus", {**answers, "shop_cluster": ("Redis", wordy)})
    assert not feedback
    assert "shop_cluster: the bus is right, but the reason does not name" in feedback.message

    feedback = check("choose_a_bus", {**answers, "checkout_tests": ("InMemoryEventBus", "ok")})
    assert "checkout_tests: the bus is right, but the reason does not name" in feedback.message

    feedback = check("choose_a_bus", {**answers, "clickstream": ("RedisEventBus", "streams")})
    assert not feedback and "clickstream: RedisEventBus is not the best fit" in feedback.message


def test_choose_a_bus_routing_scenario_wants_rabbitmq() -> None:
    answers = {key: ("", "") for key in choose_bus.SCENARIOS}
    for bus in ("RedisEventBus", "KafkaEventBus", "InMemoryEventBus"):
        answers["fulfilment_routing"] = (bus, "each team gets its own subset of events")
        feedback = check("choose_a_bus", answers)
        assert f"fulfilment_routing: {bus} is not the best fit" in feedback.message


def test_choose_a_bus_single_server_that_must_survive_a_crash_is_a_trap() -> None:
    answers = {key: ("", "") for key in choose_bus.SCENARIOS}
    answers["single_server_no_loss"] = ("InMemoryEventBus", "it is a single server")
    feedback = check("choose_a_bus", answers)
    assert "single_server_no_loss: InMemoryEventBus is not the best fit" in feedback.message
    assert "a crash loses every event" in feedback.message
    answers["single_server_no_loss"] = ("RedisEventBus", "it is a single server")
    feedback = check("choose_a_bus", answers)
    assert "single_server_no_loss: the bus is right, but the reason" in feedback.message
    answers["single_server_no_loss"] = ("RabbitMQEventBus", "durable queues survive a crash")
    feedback = check("choose_a_bus", answers)
    assert "single_server_no_loss" not in feedback.message.split("Note:")[0]
    assert any("single_server_no_loss: RabbitMQEventBus is accepted" in n for n in feedback.notes)
