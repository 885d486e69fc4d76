"""The workers' records read back from directories a learner might hand over: event types with
spaces, other programs' logs beside them, garbage and bytes that are not text, empty or
missing directories, and two groups' workers writing into one directory."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import uuid4

import pytest

from eventsource_lab import worker_log
from eventsource_lab.events import DomainEvent


class SpacedEvent(DomainEvent):
    """An event whose type has spaces, as a user may choose one (not registered: not needed)."""

    event_type: str = "Order Placed v2"


@pytest.fixture
def log_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(worker_log.LOG_ENV, str(tmp_path))
    monkeypatch.delenv(worker_log.DELAY_ENV, raising=False)
    return tmp_path


def _line(event_type: str = "OrderPlaced", at_ns: int = 1) -> str:
    return f"{uuid4()} {uuid4()} 1 {event_type} {at_ns}\n"


async def test_an_event_type_with_spaces_is_recorded_and_read_back(log_dir: Path) -> None:
    event = SpacedEvent(aggregate_id=uuid4())
    await worker_log.record(event)

    records = worker_log.handled(log_dir)

    assert [(r.event_id, r.event_type) for r in records] == [(event.event_id, "Order Placed v2")]
    assert worker_log.missing([event], records) == []


async def test_other_programs_logs_in_the_directory_are_not_read(log_dir: Path) -> None:
    await worker_log.record(SpacedEvent(aggregate_id=uuid4()))
    (log_dir / "dpkg.log").write_text("2026-12-01 17:00:00 status installed x 1\n")
    (log_dir / "7.log").mkdir()  # a directory named like a worker's file

    assert [r.pid for r in worker_log.handled(log_dir)] == [os.getpid()]


async def test_garbage_and_bytes_that_are_not_text_in_a_workers_file_are_skipped(
    log_dir: Path,
) -> None:
    await worker_log.record(SpacedEvent(aggregate_id=uuid4()))
    with (log_dir / f"{os.getpid()}.log").open("ab") as out:
        out.write(b"\xff\xfe\x00garbage\n")
        out.write(b"not-a-uuid also-not 1 OrderPlaced 5\n")
        out.write(f"{uuid4()} {uuid4()} one OrderPlaced 5\n".encode())
        out.write(f"{uuid4()} {uuid4()} 1 OrderPlaced \xd9\xa3\n".encode())  # an Arabic 3

    assert len(worker_log.handled(log_dir)) == 1


def test_an_empty_directory_has_no_records(tmp_path: Path) -> None:
    assert worker_log.handled(tmp_path) == []


def test_a_missing_directory_is_an_error_not_an_empty_record(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no worker log directory"):
        worker_log.handled(tmp_path / "typo")


def test_the_files_of_two_groups_in_one_directory_merge_in_handling_order(tmp_path: Path) -> None:
    (tmp_path / "100.log").write_text(_line(at_ns=1) + _line(at_ns=4))
    (tmp_path / "200.log").write_text(_line("Other", at_ns=2) + _line("Other", at_ns=3))

    records = worker_log.handled(tmp_path)

    assert [(r.pid, r.at_ns) for r in records] == [(100, 1), (200, 2), (200, 3), (100, 4)]


def test_a_line_not_finished_yet_is_not_read_with_half_its_timestamp(tmp_path: Path) -> None:
    """A notebook reads the files while workers append; a line caught mid-write has no newline
    yet, and its time may be cut to its first digits, which would sort it first."""
    whole = _line(at_ns=1_700_000_000_000_000_000)
    (tmp_path / "100.log").write_text(whole + whole[:-10])

    assert [r.at_ns for r in worker_log.handled(tmp_path)] == [1_700_000_000_000_000_000]
