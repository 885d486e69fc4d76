"""``python -m eventsource_lab doctor``: every section, the verdict, and the exit code."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from eventsource_lab import doctor

SECTIONS = ("== Python", "== Packages", "== Jupyter", "== Brokers", "== Ports", "== Disk")


def test_the_command_prints_every_section_and_a_verdict() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "eventsource_lab", "doctor"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for section in SECTIONS:
        assert section in result.stdout
    verdict = result.stdout.strip().splitlines()[-1]
    assert verdict.startswith("ready for the in-memory notebooks: yes; broker notebooks: redis ")
    assert "rabbitmq " in verdict and "kafka " in verdict


def test_missing_ipywidgets_means_not_ready(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # import raises ImportError
    out = io.StringIO()
    assert doctor.main(out) == 1
    text = out.getvalue()
    assert "ipywidgets       no   ModuleNotFoundError" in text
    assert text.strip().splitlines()[-1] == (
        "ready for the in-memory notebooks: no; broker notebooks: redis no, rabbitmq no, kafka no"
    )


def test_a_broker_set_in_the_environment_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    monkeypatch.setattr(doctor, "_loopback_bind", lambda: (False, "cannot bind 127.0.0.1"))
    out = io.StringIO()
    assert doctor.main(out) == 0
    verdict = out.getvalue().strip().splitlines()[-1]
    assert verdict.endswith("kafka yes")  # url mode needs no local port
    assert "loopback         no   cannot bind" in out.getvalue()


def test_the_report_shows_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVENTSOURCE_LAB_RABBITMQ_URL", "amqp://me:hunter2@mq.local:5672/")
    out = io.StringIO()
    doctor.main(out)
    assert "EVENTSOURCE_LAB_RABBITMQ_URL=amqp://***@mq.local:5672/" in out.getvalue()
    assert "hunter2" not in out.getvalue()
