"""Classroom exercises: each notebook in ``notebooks/exercises`` ends with a ``check()`` cell.

``check(name, *answer)`` runs the exercise's check on your answer and returns a
:class:`Feedback`: what is wrong with a hint, or, when right, why it works. Checks that run a
bus are asynchronous, so you ``await`` them (a notebook cell can)::

    await check("projection", OrderSummaryProjection)
    check("choose_a_bus", answers)  # the one synchronous check

============================  =====================================  =====================
name                          answer                                 notebook
============================  =====================================  =====================
``projection``                the projection class                   ex01_projection
``wildcard_audit``            the audit class, ``attach(bus, a)``    ex02_wildcard_audit
``idempotent_handler``        the handler class                      ex03_idempotent_handler
``background_shutdown``       ``async publish_orders(bus, events)``  ex04_background_shutdown
``dlq_replay``                scenario, subscribed handler, replay   ex05_dlq_replay
``choose_a_bus``              ``{scenario: (bus, reason)}``          ex06_choose_a_bus
============================  =====================================  =====================
"""

from . import background, choose_bus, dlq_replay, idempotent, projection, wildcard_audit
from ._core import EXERCISES, Exercise, Feedback, PendingCheck, Problem, check

__all__ = [
    "EXERCISES",
    "Exercise",
    "Feedback",
    "PendingCheck",
    "Problem",
    "background",
    "check",
    "choose_bus",
    "dlq_replay",
    "idempotent",
    "projection",
    "wildcard_audit",
]
