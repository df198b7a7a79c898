"""Reliability under faults: the chaos driver, its independent checker, and the soak run.

``make chaos`` runs :mod:`tests.chaos.driver` for ten minutes; ``make soak``
runs :mod:`tests.chaos.soak` for thirty. Short versions run in ``make test``
(``tests/integration/test_chaos.py``).
"""
