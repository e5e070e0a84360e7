"""asyncio: futures completed from the native dispatcher thread on the
running loop, no thread per pending request."""

import asyncio
import threading

import pytest

import lhcluster
from conftest import serve


def test_a_thousand_concurrent_requests(broker, client):
    with serve(broker, {"square": (lambda n, ctx: n * n, True)}, capacity=4):
        threads_before = threading.active_count()

        async def main():
            futures = [client.request_async("square", i, timeout=30) for i in range(1000)]
            # All sent before any is awaited: no Python thread was started.
            assert threading.active_count() == threads_before
            return await asyncio.gather(*futures)

        assert asyncio.run(main()) == [i * i for i in range(1000)]


def test_outcomes_raise_in_the_awaiting_coroutine(broker, client):
    def fail(payload, ctx):
        raise RuntimeError("nope")

    with serve(broker, {"fail": (fail, False), "ok": (lambda p, ctx: p, False)}):

        async def main():
            with pytest.raises(lhcluster.Failed, match="nope"):
                await client.request_async("fail", b"")
            with pytest.raises(lhcluster.NoWorkers):
                await client.request_async("unserved", b"", flags=lhcluster.Flags.FAIL_FAST)
            assert await client.request_async("ok", b"fine") == b"fine"
            assert await client.request_async("ok", b"", one_way=True) is None

        asyncio.run(main())


def test_a_response_handle_can_be_awaited(broker, client):
    release = threading.Event()

    def gate(payload, ctx):
        release.wait(10)
        if payload == b"boom":
            raise RuntimeError("boom")
        return payload

    with serve(broker, {"gate": (gate, False)}, capacity=4):

        async def main():
            handle = client.send("gate", b"a", timeout=30)
            failing = client.send("gate", b"boom", timeout=30)
            # Waiting does not block the loop: a timed-out wait leaves the
            # request going, and it can be awaited again.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.ensure_future(_awaited(handle)), 0.05)
            release.set()
            assert await handle == b"a"
            assert await handle == b"a", "awaited twice, the same outcome"
            assert handle.result() == b"a", "and result() agrees"
            with pytest.raises(lhcluster.Failed, match="boom"):
                await failing
            # Awaited while another thread waits on result(): both get it.
            slow = client.send("gate", b"b", timeout=30)
            from_thread = []
            waiter = threading.Thread(target=lambda: from_thread.append(slow.result()))
            waiter.start()
            assert await slow == b"b"
            waiter.join(10)
            assert from_thread == [b"b"]

        asyncio.run(main())


async def _awaited(handle):
    return await handle


def test_an_awaited_response_resolves_while_other_futures_keep_the_dispatcher_busy(broker, client):
    # A thread waiting on result() takes the handle's waker from the
    # dispatcher every 100 ms; the dispatcher must poll it again on its
    # timer even though request_async traffic never lets it idle.
    release = threading.Event()

    def gate(payload, ctx):
        if payload == b"slow":
            release.wait(10)
        return payload

    with serve(broker, {"gate": (gate, False)}, capacity=4):

        async def main():
            slow = client.send("gate", b"slow", timeout=30)
            waiter = threading.Thread(target=slow.result)
            waiter.start()
            awaited = asyncio.ensure_future(_awaited(slow))
            loop = asyncio.get_running_loop()
            started = loop.time()
            loop.call_later(0.3, release.set)
            while not awaited.done():
                busy = [client.request_async("gate", b"busy", timeout=30) for _ in range(16)]
                assert await asyncio.gather(*busy) == [b"busy"] * 16
                assert loop.time() - started < 60, "the awaited Response never resolved"
            assert awaited.result() == b"slow"
            waiter.join(10)

        asyncio.run(main())


def test_a_cancelled_future_does_not_disturb_the_others(broker, client):
    release = threading.Event()
    with serve(broker, {"gate": (lambda p, ctx: release.wait(10) and p, False)}, capacity=2):

        async def main():
            doomed = client.request_async("gate", b"a")
            kept = client.request_async("gate", b"b")
            doomed.cancel()
            release.set()
            assert await kept == b"b"
            with pytest.raises(asyncio.CancelledError):
                await doomed

        asyncio.run(main())


def test_timeout_while_awaiting(broker, client):
    release = threading.Event()
    with serve(broker, {"stuck": (lambda p, ctx: release.wait(10) and p, False)}):

        async def main():
            with pytest.raises(lhcluster.Timeout):
                await client.request_async("stuck", b"", timeout=0.2)

        asyncio.run(main())
        release.set()


def test_the_event_loop_keeps_running_while_requests_wait(broker, client):
    release = threading.Event()
    with serve(broker, {"gate": (lambda p, ctx: release.wait(10) and p, False)}):

        async def ticker(ticks):
            for _ in range(5):
                await asyncio.sleep(0.01)
                ticks.append(1)
            release.set()

        async def main():
            ticks = []
            pending = client.request_async("gate", b"done")
            await asyncio.gather(ticker(ticks), pending)
            assert len(ticks) == 5
            return pending.result()

        assert asyncio.run(main()) == b"done"


def test_request_async_needs_a_running_loop(client):
    with pytest.raises(RuntimeError):
        client.request_async("t", b"")
