"""The data the "choosing a bus" notebook charts is committed (the full matrix takes minutes);
these checks fail as soon as it no longer matches the library, so it cannot silently go stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eventsource_lab.conformance import BEHAVIOURS
from eventsource_lab.matrix import BUSES, PROBES

DATA = Path(__file__).resolve().parents[1] / "notebooks" / "data"
REGENERATE_MATRIX = (
    "regenerate it: python -m eventsource_lab conformance --json "
    "notebooks/data/conformance_matrix.json"
)
REGENERATE_BENCHMARKS = (
    "regenerate it: python benchmarks/run_all.py --json notebooks/data/benchmarks.json"
)


def _load(name: str) -> object:
    return json.loads((DATA / name).read_text())


def test_matrix_has_exactly_the_current_behaviours_and_probes() -> None:
    matrix = _load("conformance_matrix.json")
    assert isinstance(matrix, dict)
    expected = [[b.name, b.claim] for b in BEHAVIOURS] + [[p.name, p.claim] for p in PROBES]
    assert matrix["rows"] == expected, f"the matrix's rows are stale; {REGENERATE_MATRIX}"
    assert matrix["buses"] == list(BUSES), f"the matrix lacks a bus; {REGENERATE_MATRIX}"
    assert list(matrix["cells"]) == [name for name, _ in expected]


@pytest.mark.parametrize("bus", BUSES)
def test_matrix_ran_every_check_on_each_bus(bus: str) -> None:
    matrix = _load("conformance_matrix.json")
    assert isinstance(matrix, dict)
    outcomes = {name: cells[bus]["outcome"] for name, cells in matrix["cells"].items()}
    unrun = sorted(
        name for name, outcome in outcomes.items() if outcome not in ("holds", "differs", "n/a")
    )
    assert not unrun, f"{bus} did not run {unrun}; {REGENERATE_MATRIX} where every broker starts"
    unexplained = sorted(
        name
        for name, cells in matrix["cells"].items()
        if cells[bus]["outcome"] != "holds" and not cells[bus]["note"]
    )
    assert not unexplained, f"{bus}: no note says how {unexplained} differ or why they do not apply"


# The verdicts 07_16's prose explains, probe by probe (every behaviour holds on every bus).
EXPLAINED_VERDICTS = {
    "publish_waits_for_handlers": ("holds", "differs", "differs", "differs"),
    "keeps_global_order": ("holds", "holds", "holds", "differs"),
    "groups_each_get_everything": ("differs", "holds", "holds", "holds"),
    "group_shares_the_work": ("differs", "holds", "holds", "holds"),
    "keeps_events_for_a_stopped_consumer": ("differs", "holds", "holds", "holds"),
    "retries_a_failing_handler": ("differs", "holds", "holds", "holds"),
    "dead_letters_poison": ("differs", "holds", "holds", "holds"),
    "keeps_aggregate_order_in_a_group": ("n/a", "differs", "differs", "holds"),
    "keeps_aggregate_order_after_a_retry": ("n/a", "holds", "differs", "holds"),
}


def test_the_matrix_says_what_choosing_a_bus_explains() -> None:
    matrix = _load("conformance_matrix.json")
    assert isinstance(matrix, dict)
    cells = matrix["cells"]
    verdicts = {name: tuple(cells[name][bus]["outcome"] for bus in BUSES) for name in cells}
    expected = {b.name: ("holds",) * len(BUSES) for b in BEHAVIOURS} | EXPLAINED_VERDICTS
    changed = sorted(name for name in expected if verdicts.get(name) != expected[name])
    assert not changed, (
        f"verdicts changed for {changed}: rewrite 07_16's prose, then EXPLAINED_VERDICTS"
    )
    group = cells["keeps_aggregate_order_in_a_group"]
    assert "0 of them split between the consumers" in group["kafka"]["note"]
    assert group["rabbitmq"]["note"].startswith("25 of 25 aggregates")  # dealt out in turn


def test_benchmarks_have_a_row_per_bus() -> None:
    rows = _load("benchmarks.json")
    assert isinstance(rows, list)
    assert [row["bus"] for row in rows] == list(BUSES), REGENERATE_BENCHMARKS
    for row in rows:
        assert "unavailable" not in row, f"{row['bus']} was not measured; {REGENERATE_BENCHMARKS}"
        assert row["baseline_events_per_s"] > 0 and row["bus_events_per_s"] > 0
        ratio = row["bus_events_per_s"] / row["baseline_events_per_s"]
        assert row["ratio"] == pytest.approx(ratio, rel=1e-2)
