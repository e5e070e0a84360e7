"""Notifications: NotifyBroker, NotifyPublisher, NotifySubscriber with
callbacks, prefixes, the iterator and the async iterator."""

import asyncio
import threading

import pytest

import lhcluster


@pytest.fixture
def notify(ep):
    with lhcluster.NotifyBroker(ep("nfront"), ep("nback")) as nb:
        with lhcluster.NotifyPublisher(nb.backend) as pub:
            yield nb, pub


def test_callbacks_by_topic_and_prefix(notify):
    nb, pub = notify
    got, done = [], threading.Event()

    def record(n):
        got.append(n)
        if len(got) == 3:
            done.set()

    with lhcluster.NotifySubscriber(nb.frontend) as sub:
        sub.on("orders.shipped", record, typed=True)

        @sub.on_prefix("metrics.")
        def metrics(n):
            record(n)

        pub.publish("orders.shipped", {"order_no": 7})
        pub.publish("metrics.cpu", b"\x01", id=99)
        pub.publish("unrelated", b"never")
        pub.publish("orders.shipped", {"order_no": 8})
        assert done.wait(5)
    assert got[0] == lhcluster.Notification("orders.shipped", {"order_no": 7}, None)
    assert got[1] == lhcluster.Notification("metrics.cpu", b"\x01", 99)
    assert got[2].payload == {"order_no": 8}
    assert sorted(sub.topics()) == ["orders.shipped"] and sub.prefixes() == ["metrics."]


def test_iterator_gets_what_no_callback_takes(notify):
    nb, pub = notify
    with lhcluster.NotifySubscriber(nb.frontend, topics=["a", "b"], typed=True) as sub:
        pub.publish("a", [1, 2])
        pub.publish("b", {"k": "v"}, id=3)
        first = sub.recv(5)
        second = next(iter(sub))
        assert (first.topic, first.payload) == ("a", [1, 2])
        assert (second.topic, second.payload, second.id) == ("b", {"k": "v"}, 3)
        assert sub.recv(0.05) is None
    # After stop the iterator ends.
    assert list(sub) == []


def test_raw_payloads_and_decode(notify):
    nb, pub = notify
    with lhcluster.NotifySubscriber(nb.frontend, topics=["raw"]) as sub:
        pub.publish("raw", {"x": 1})  # typed by default: MessagePack
        n = sub.recv(5)
        assert n.payload == lhcluster.packb({"x": 1})
        assert n.decode() == {"x": 1}


def test_callback_outcomes_and_errors(notify):
    nb, pub = notify
    seen, stopped = [], threading.Event()

    def once(n):
        seen.append(n.payload)
        return "unsubscribe"

    def broken(n):
        raise RuntimeError("callback bug")

    def stopper(n):
        stopped.set()
        return "stop"

    with lhcluster.NotifySubscriber(nb.frontend) as sub:
        sub.on("once", once)
        sub.on("broken", broken)
        sub.on("stop", stopper)
        pub.publish("once", b"1")
        pub.publish("broken", b"x")  # logged, the subscriber carries on
        pub.publish("once", b"2")
        pub.publish("stop", b"")
        assert stopped.wait(5)
        assert sub._native.wait_stopped(5)
    assert seen == [b"1"]
    assert "once" not in sub.topics()


def test_async_iteration(notify):
    nb, pub = notify
    with lhcluster.NotifySubscriber(nb.frontend, topics=["tick"], typed=True) as sub:

        async def main():
            got = []
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, lambda: [pub.publish("tick", i) for i in range(3)])
            async for n in sub:
                got.append(n.payload)
                if len(got) == 3:
                    break
            return got

        assert asyncio.run(main()) == [0, 1, 2]

        async def ends_on_stop():
            asyncio.get_running_loop().call_later(0.05, sub.stop)
            return [n async for n in sub]

        assert asyncio.run(ends_on_stop()) == []


def test_stats(notify):
    nb, pub = notify
    with lhcluster.NotifySubscriber(nb.frontend, topics=["s"]) as sub:
        pub.publish("s", b"x")
        assert sub.recv(5) is not None
        assert sub.stats()["received"] >= 1
        assert pub.stats()["published"] >= 1
        assert pub.stats()["connected"] is True
        assert isinstance(nb.stats(), dict)
        assert pub.wait_connected(1)
