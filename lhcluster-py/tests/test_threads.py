"""The GIL is released while Rust waits, and stop() leaves no threads."""

import os
import threading
import time

import lhcluster
from conftest import serve


def _os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def test_another_thread_runs_while_one_waits_on_a_request(broker, client):
    # The handler (which needs the GIL itself) waits for a pure-Python
    # thread to count: if request() held the GIL, neither could run and the
    # request would time out.
    counted = threading.Event()
    count = [0]

    def counter():
        while count[0] < 200_000:
            count[0] += 1
        counted.set()

    def handler(payload, ctx):
        assert counted.wait(10)
        return str(count[0]).encode()

    with serve(broker, {"wait.for.count": (handler, False)}):
        t = threading.Thread(target=counter)
        t.start()
        assert client.request("wait.for.count", b"", timeout=20) == b"200000"
        t.join()


def test_another_thread_runs_while_one_waits_on_a_handle(broker, client):
    release = threading.Event()
    with serve(broker, {"gate": (lambda p, ctx: release.wait(10) and p, False)}):
        handle = client.send("gate", b"v")
        ticks = []

        def tick():
            for _ in range(20):
                ticks.append(1)
                time.sleep(0.005)
            release.set()

        t = threading.Thread(target=tick)
        t.start()
        assert handle.result(10) == b"v"  # waits while `tick` runs
        t.join()
        assert len(ticks) == 20


def test_handlers_run_in_parallel_up_to_capacity(broker, client):
    barrier = threading.Barrier(3, timeout=10)

    def meet(payload, ctx):
        barrier.wait()  # all three must be running at once
        return b"met"

    with serve(broker, {"meet": (meet, False)}, capacity=3):
        handles = [client.send("meet", b"") for _ in range(3)]
        assert [h.result(15) for h in handles] == [b"met"] * 3


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_stop_leaves_no_threads(ep):
    # Warm up what lives for the whole process (the asyncio dispatcher,
    # ZeroMQ's context threads), then count.
    with lhcluster.Broker(ep(), ep()) as b, lhcluster.Client(b.frontend) as c:
        import asyncio

        async def warm():
            try:
                await c.request_async("warm", b"", flags=lhcluster.Flags.FAIL_FAST)
            except lhcluster.NoWorkers:
                pass

        asyncio.run(warm())
    assert _wait_for(lambda: True)
    baseline_os = _os_threads()
    baseline_py = threading.active_count()

    b = lhcluster.Broker(ep(), ep())
    w = lhcluster.Worker(b.backend, capacity=4)
    w.handle("t", lambda p, ctx: p)
    w.start()
    c = lhcluster.Client(b.frontend)
    p = lhcluster.ClientProxy(ep(), b.frontend)
    nb = lhcluster.NotifyBroker(ep(), ep())
    pub = lhcluster.NotifyPublisher(nb.backend)
    sub = lhcluster.NotifySubscriber(nb.frontend, topics=["x"])
    assert c.request("t", b"x", timeout=10) == b"x"
    assert _os_threads() > baseline_os
    for role in (sub, pub, nb, p, c, w, b):
        role.stop()
    assert _wait_for(lambda: _os_threads() == baseline_os), (_os_threads(), baseline_os)
    assert threading.active_count() == baseline_py


def test_dropping_roles_without_stop_ends_their_threads(ep):
    baseline = _os_threads()

    def run():
        b = lhcluster.Broker(ep(), ep())
        w = lhcluster.Worker(b.backend)
        w.handle("t", lambda p, ctx: p)
        w.start()
        c = lhcluster.Client(b.frontend)
        assert c.request("t", b"x", timeout=10) == b"x"
        nb = lhcluster.NotifyBroker(ep(), ep())
        sub = lhcluster.NotifySubscriber(nb.frontend, topics=["x"])
        sub.on("y", lambda n: None)
        pub = lhcluster.NotifyPublisher(nb.backend)
        pub.publish("x", b"1")
        assert sub.recv(5) is not None
        # No stop(): collected on return.

    run()
    import gc

    gc.collect()
    assert _wait_for(lambda: _os_threads() <= baseline), (_os_threads(), baseline)


def test_ctrl_c_interrupts_a_blocked_request(broker, client):
    import signal

    # Python handles SIGINT only if it was not ignored when the process
    # started, and a shell starts background jobs with SIGINT ignored (CI
    # may run so): interrupt_main() then does nothing. A user's Ctrl-C
    # meets Python's own handler; so does this test.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_interrupts_a_blocked_request(broker, client)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_interrupts_a_blocked_request(broker, client):
    import _thread

    release = threading.Event()
    running = threading.Event()

    def forever(p, ctx):
        running.set()
        return release.wait(20) and p

    def interrupt_once_running():
        # Once the handler runs, the main thread waits on the request.
        if running.wait(10):
            _thread.interrupt_main()

    with serve(broker, {"forever": (forever, False)}):
        timer = threading.Thread(target=interrupt_once_running, daemon=True)
        timer.start()
        started = time.monotonic()
        try:
            client.request("forever", b"", timeout=30)
            raise AssertionError("the request should have been interrupted")
        except KeyboardInterrupt:
            pass
        except lhcluster.Error as e:  # say what ended it instead
            raise AssertionError(f"ended by {e!r}, not by the interrupt") from e
        assert time.monotonic() - started < 5
        release.set()
