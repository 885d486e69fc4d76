"""NodesView on a fake cluster: rows, the leader's star, buses placed by URL, errors, snapshot."""

from __future__ import annotations

import asyncio

from eventsource_lab.errors import BrokerError
from eventsource_lab.redact import redact_url
from eventsource_lab.widgets.rabbitmq_nodes import NodeRow, NodesView


class FakeNode:
    def __init__(self, name: str, port: int) -> None:
        self.name = name
        self.url = f"amqp://u:s3cret@127.0.0.1:{port}/"
        self.running = True

    def is_running(self) -> bool:
        return self.running


class FakeCluster:
    """What NodesView reads of a RabbitMQCluster, set by hand."""

    def __init__(self) -> None:
        self.nodes = [FakeNode(f"rabbit-{i}@localhost", 5670 + i) for i in (1, 2, 3)]
        self.leader: FakeNode | None = self.nodes[0]
        self.error: BrokerError | None = None
        self.asked: list[str] = []

    def queue_leader(self, queue: str) -> FakeNode | None:
        self.asked.append(queue)
        if self.error is not None:
            raise self.error
        return self.leader


class FakeBus:
    def __init__(self, url: str | None) -> None:
        self.connected_url = None if url is None else redact_url(url)


def test_each_node_shows_its_state_the_leader_and_the_buses_on_it() -> None:
    cluster = FakeCluster()
    buses = {"publisher": FakeBus(cluster.nodes[0].url), "consumer": FakeBus(cluster.nodes[0].url)}
    view = NodesView(cluster, "shop.orders", buses)  # type: ignore[arg-type]
    assert view.rows == [] and "not read yet" in view.snapshot_html()
    asyncio.run(view.refresh())
    assert cluster.asked == ["shop.orders"]
    assert view.leader == "rabbit-1@localhost"
    assert view.rows[0] == NodeRow("rabbit-1@localhost", True, True, ("publisher", "consumer"))
    assert view.rows[1:] == [
        NodeRow("rabbit-2@localhost", True, False, ()),
        NodeRow("rabbit-3@localhost", True, False, ()),
    ]

    cluster.nodes[0].running = False  # the failover: the leader and the buses move
    cluster.leader = cluster.nodes[2]
    buses["consumer"].connected_url = redact_url(cluster.nodes[1].url)
    buses["publisher"].connected_url = None  # reconnecting
    asyncio.run(view.refresh())
    assert [(r.running, r.leader, r.buses) for r in view.rows] == [
        (False, False, ()),
        (True, False, ("consumer",)),
        (True, True, ()),
    ]
    html = view.snapshot_html()
    assert "stopped" in html and "★ leader" in html and "s3cret" not in html
    assert repr(view) == (
        "NodesView(shop.orders: rabbit-1@localhost stopped; rabbit-2@localhost running "
        "[consumer]; rabbit-3@localhost running leader)"
    )
    view.close()
    assert "rabbit-3@localhost" in view.snapshot_html()  # the last frame stays


def test_a_failed_read_is_shown_and_the_rows_before_it_stay() -> None:
    cluster = FakeCluster()
    view = NodesView(cluster, "q")  # type: ignore[arg-type]
    asyncio.run(view.refresh())
    before = view.rows
    cluster.error = BrokerError("rabbitmqctl <timed out>")
    asyncio.run(view.refresh())
    assert view.rows == before
    assert view.error == "BrokerError: rabbitmqctl <timed out>"
    assert "rabbitmqctl &lt;timed out&gt;" in view.snapshot_html()
    cluster.error = None
    asyncio.run(view.refresh())
    assert view.error is None and "timed out" not in view.snapshot_html()


def test_with_every_node_stopped_no_leader_is_asked_for() -> None:
    cluster = FakeCluster()
    for node in cluster.nodes:
        node.running = False
    view = NodesView(cluster, "q")  # type: ignore[arg-type]
    asyncio.run(view.refresh())
    assert cluster.asked == [] and view.leader is None
    assert [row.running for row in view.rows] == [False, False, False]


def test_names_are_escaped() -> None:
    cluster = FakeCluster()
    cluster.nodes[1].name = "<b>evil</b>@host"
    view = NodesView(cluster, "<q>", {"<bus>": FakeBus(cluster.nodes[1].url)})  # type: ignore[arg-type]
    asyncio.run(view.refresh())
    html = view.snapshot_html()
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil" in html
    assert "&lt;q&gt;" in html and "&lt;bus&gt;" in html
