"""Shared fixtures: unique endpoints, a running broker + client, and a hard
time limit per test (a hang fails the test with every thread's stack rather
than stalling the run)."""

import faulthandler
import itertools
import os
import uuid

import pytest

import lhcluster

_ids = itertools.count()

#: Seconds one test may take before the run is ended with a dump of stacks.
TEST_TIME_LIMIT = float(os.environ.get("LHCLUSTER_TEST_TIME_LIMIT", "120"))


@pytest.fixture(autouse=True)
def _time_limit():
    faulthandler.dump_traceback_later(TEST_TIME_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def ep():
    """A factory of unique inproc endpoints: ``ep("front")``."""
    run = uuid.uuid4().hex[:8]

    def make(name: str = "ep") -> str:
        return f"inproc://py-{run}-{name}-{next(_ids)}"

    return make


@pytest.fixture
def broker(ep):
    with lhcluster.Broker(ep("front"), ep("back")) as b:
        yield b


@pytest.fixture
def client(broker):
    with lhcluster.Client(broker.frontend) as c:
        assert c.wait_connected(5)
        yield c


def serve(broker, handlers, **options):
    """A started worker on ``broker`` with ``{type: (fn, typed)}``."""
    w = lhcluster.Worker(broker.backend, **options)
    for name, (fn, typed) in handlers.items():
        w.handle(name, fn, typed=typed)
    return w.start()
