"""Live views of a bus for notebooks (ipywidgets 8, drawn in Python, no front-end build).

Each widget also carries a static HTML snapshot, so a saved notebook shows it without a kernel.
"""

from .brokers import BrokerPanel
from .cluster import ClusterView
from .fanout import FanoutView
from .faults import FaultControls
from .partitions import PartitionView
from .stats import StatsPanel
from .timeline import EventTimeline

__all__ = [
    "BrokerPanel",
    "ClusterView",
    "EventTimeline",
    "FanoutView",
    "FaultControls",
    "PartitionView",
    "StatsPanel",
]
