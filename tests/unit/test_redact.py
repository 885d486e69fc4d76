"""Secrets stay out of what people see: URLs lose their credentials, free text its passwords."""

from __future__ import annotations

import pytest

from eventsource_lab.redact import redact_text, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@127.0.0.1:6400/0", "redis://***@127.0.0.1:6400/0"),
        ("amqp://user:s3cret@mq.local:5672/", "amqp://***@mq.local:5672/"),
        ("amqp://user:p@ss@mq.local/", "amqp://***@mq.local/"),
        ("redis://127.0.0.1:6400/0", "redis://127.0.0.1:6400/0"),
        ("127.0.0.1:9092", "127.0.0.1:9092"),
        (  # a cluster's nodes: every one is kept, none keeps its password
            "amqp://u:s3cret@127.0.0.1:1/,amqp://u:s3cret@127.0.0.1:2/, amqp://u:s3cret@h:3/",
            "amqp://***@127.0.0.1:1/,amqp://***@127.0.0.1:2/, amqp://***@h:3/",
        ),
        ("amqp://u:a,b@h:1/,amqp://u:a,b@h:2/", "amqp://***@h:1/,amqp://***@h:2/"),
    ],
)
def test_a_url_keeps_its_address_and_loses_its_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_free_text_loses_url_credentials_and_the_known_secrets() -> None:
    text = "tried redis://:s3cret@h:1/0 and amqp://u:pw@h:2/, then requirepass s3cret2 failed"
    assert redact_text(text, ["s3cret2", ""]) == (
        "tried redis://***@h:1/0 and amqp://***@h:2/, then requirepass *** failed"
    )
    assert redact_text("no secrets at host:9092") == "no secrets at host:9092"
