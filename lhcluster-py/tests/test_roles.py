"""Every request role from Python: broker, worker, client, client proxy;
raw and typed payloads, outcomes, handles, receipts, reply-to, stats."""

import queue
import threading
import time

import pytest

import lhcluster
from lhcluster import Flags
from conftest import serve


def test_raw_request_round_trip(broker, client):
    with serve(broker, {"echo": (lambda p, ctx: p[::-1], False)}):
        assert client.request("echo", b"hello", timeout=5) == b"olleh"
        # Empty payloads, bytearray and memoryview in; bytes out.
        assert client.request("echo", None) == b""
        assert client.request("echo", bytearray(b"ab")) == b"ba"
        assert client.request("echo", memoryview(b"xyz")) == b"zyx"


def test_typed_request_round_trip(broker, client):
    def add(req, ctx):
        return {"sum": req["a"] + req["b"], "items": req.get("items", [])}

    with serve(broker, {"math.add": (add, True)}):
        got = client.request("math.add", {"a": 2, "b": 40, "items": [1, "x", None, b"\x00"]})
        assert got == {"sum": 42, "items": [1, "x", None, b"\x00"]}
        # A type given by number reaches the same handler.
        got = client.request(lhcluster.request_type_id("math.add"), {"a": 1, "b": 1})
        assert got["sum"] == 2


def test_handler_gets_the_context(broker, client):
    seen = {}

    def handler(payload, ctx):
        seen.update(
            request_type=ctx.request_type,
            type_name=ctx.type_name,
            request_id=ctx.request_id,
            flags=ctx.flags,
            attempt=ctx.attempt,
            deadline=ctx.deadline,
            remaining=ctx.remaining(),
            expired=ctx.is_expired(),
        )
        return b"ok"

    with serve(broker, {"ctx.check": (handler, False)}):
        client.request("ctx.check", b"", id=42, timeout=7.5, flags=Flags.RECEIPT_ON_RECEIVE)
    assert seen["request_type"] == lhcluster.request_type_id("ctx.check")
    assert seen["type_name"] == "ctx.check"
    assert seen["request_id"] == 42
    assert seen["flags"] & Flags.RECEIPT_ON_RECEIVE
    assert seen["attempt"] == 1
    assert seen["deadline"] is not None
    assert 0 < seen["remaining"] <= 7.5
    assert seen["expired"] is False


def test_handler_with_one_argument_and_decorator(broker, client):
    worker = lhcluster.Worker(broker.backend)

    @worker.handler("upper")
    def upper(payload):
        return payload.upper()

    assert upper(b"a") == b"A"  # the decorator returns the function
    with worker:
        assert client.request("upper", b"abc") == b"ABC"


def test_handler_exception_ends_failed_with_its_text(broker, client):
    def boom(payload, ctx):
        raise ValueError("the disk is full")

    def bad(payload, ctx):
        raise lhcluster.BadRequest("width must be positive")

    def silent(payload, ctx):
        raise KeyError

    with serve(broker, {"boom": (boom, False), "bad": (bad, True), "silent": (silent, False)}):
        with pytest.raises(lhcluster.Failed) as e:
            client.request("boom", b"x")
        assert e.value.status == "failed"
        assert e.value.text == "the disk is full"
        assert isinstance(e.value, lhcluster.StatusError)
        assert isinstance(e.value, lhcluster.Error)

        with pytest.raises(lhcluster.BadRequest) as e:
            client.request("bad", {"width": -1})
        assert e.value.status == "bad_request"
        assert e.value.text == "width must be positive"

        with pytest.raises(lhcluster.Failed) as e:
            client.request("silent", b"")
        assert e.value.text == "KeyError"

        # The worker keeps serving after failures.
        with pytest.raises(lhcluster.Failed):
            client.request("boom", b"again")


def test_typed_handler_refuses_a_payload_that_is_not_messagepack(broker, client):
    with serve(broker, {"typed.only": (lambda req, ctx: req, True)}):
        with pytest.raises(lhcluster.BadRequest) as e:
            client.request("typed.only", b"\x92\x01", typed=False)
        assert "does not decode" in e.value.text


def test_unsendable_return_value_ends_failed(broker, client):
    with serve(broker, {"raw": (lambda p, ctx: 12, False), "typed": (lambda p, ctx: object(), True)}):
        with pytest.raises(lhcluster.Failed, match="cannot be sent"):
            client.request("raw", b"")
        with pytest.raises(lhcluster.Failed, match="cannot be sent"):
            client.request("typed", {})


def test_duplicate_is_rejected_while_the_first_runs(broker, client):
    started, release = threading.Event(), threading.Event()

    def slow(payload, ctx):
        started.set()
        release.wait(10)
        return b"done"

    with serve(broker, {"slow": (slow, False)}):
        first = client.send("slow", b"", id=7)
        assert started.wait(5)
        with pytest.raises(lhcluster.Rejected) as e:
            client.request("slow", b"", id=7)
        assert e.value.status == "rejected"
        release.set()
        assert first.result(5) == b"done"


def test_fail_fast_without_workers(client):
    with pytest.raises(lhcluster.NoWorkers):
        client.request("nobody.serves.this", b"", flags=Flags.FAIL_FAST)


def test_a_request_over_the_brokers_limit_is_not_sent(ep):
    with lhcluster.Broker(ep("front"), ep("back"), max_message_size=4096) as b:
        with lhcluster.Client(b.frontend) as c:
            assert c.wait_connected(5)
            with pytest.raises(lhcluster.TooLarge) as e:
                c.request("echo", b"x" * 8192, timeout=30)
            assert isinstance(e.value, ValueError)
            assert "max_message_size of 4096" in e.value.text
            assert c.stats()["requests_too_large"] == 1


def test_timeout(broker, client):
    release = threading.Event()
    with serve(broker, {"stuck": (lambda p, ctx: release.wait(10) and b"late", False)}):
        with pytest.raises(lhcluster.Timeout) as e:
            client.request("stuck", b"", timeout=0.2)
        assert isinstance(e.value, TimeoutError)
        release.set()


def test_response_handle(broker, client):
    release = threading.Event()
    with serve(broker, {"gate": (lambda p, ctx: release.wait(10) and p, False)}):
        handle = client.send("gate", b"v", flags=Flags.RECEIPT_ON_SEND | Flags.RECEIPT_ON_RECEIVE)
        assert handle.request_type == lhcluster.request_type_id("gate")
        assert handle.wait_receipt("sent", 5)
        assert handle.wait_receipt("received", 5)
        assert set(handle.receipts()) == {"sent", "received"}
        assert not handle.done()
        # A result() that times out leaves the request going.
        with pytest.raises(lhcluster.Timeout):
            handle.result(timeout=0.05)
        release.set()
        assert handle.result(5) == b"v"
        assert handle.done()
        assert handle.result() == b"v"  # the outcome is kept
        with pytest.raises(ValueError):
            handle.wait_receipt("lost", 1)


def test_one_way(broker, client):
    ran = threading.Event()

    def note(payload, ctx):
        assert ctx.flags & Flags.ONE_WAY
        ran.set()

    with serve(broker, {"note": (note, False)}):
        handle = client.send("note", b"x", one_way=True, flags=Flags.RECEIPT_ON_SEND)
        assert handle.result(5) is None
        assert ran.wait(5)


def test_reply_to_another_client(broker, client):
    with serve(broker, {"double": (lambda req, ctx: req * 2, True)}):
        with lhcluster.Client(broker.frontend, name="listener") as listener:
            assert listener.wait_connected(5)
            handle = client.send("double", 21, reply_to="listener", id=5)
            assert handle.result(5) is None
            event = None
            while event is None or event["kind"] != "response":
                event = listener.next_event(timeout=5, typed=True)
                assert event is not None
            assert event["request_id"] == 5
            assert event["payload"] == 42


def test_several_frames(broker, client):
    with serve(broker, {"frames": (lambda p, ctx: list(reversed(p)), False)}):
        assert client.request("frames", [b"a", b"b", b"c"], typed=False) == [b"c", b"b", b"a"]


def test_client_proxy_in_front_of_the_broker(broker, ep):
    with lhcluster.ClientProxy(ep("proxy"), broker.frontend) as proxy:
        with serve(broker, {"via.proxy": (lambda p, ctx: b"proxied " + p, False)}):
            with lhcluster.Client(proxy.endpoint) as c:
                assert c.request("via.proxy", b"hi", timeout=10) == b"proxied hi"
            stats = proxy.stats()
            assert isinstance(stats, dict)
            assert stats["requests_received"] >= 1


def test_tcp_on_a_port_the_system_picks():
    with lhcluster.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as b:
        assert b.frontend.startswith("tcp://127.0.0.1:") and not b.frontend.endswith("*")
        with serve(b, {"tcp.echo": (lambda p, ctx: p, False)}), lhcluster.Client(b.frontend) as c:
            assert c.request("tcp.echo", b"over tcp", timeout=10) == b"over tcp"


def test_stats_are_dicts(broker, client):
    with serve(broker, {"count": (lambda p, ctx: p, False)}) as worker:
        for _ in range(3):
            client.request("count", b"")
        b = broker.stats()
        assert b["requests_completed"] >= 3
        assert lhcluster.request_type_id("count") in b["types"]
        assert client.stats()["responses_received"] >= 3
        assert worker.stats()["requests_succeeded"] >= 3


def test_stop_is_idempotent_and_final(ep):
    b = lhcluster.Broker(ep("f"), ep("b"))
    c = lhcluster.Client(b.frontend)
    c.stop()
    c.stop()
    with pytest.raises(lhcluster.Stopped):
        c.request("x", b"")
    b.stop()
    b.stop()
    with pytest.raises(lhcluster.Stopped):
        b.stats()


def test_worker_context_manager_and_repr(broker):
    w = lhcluster.Worker(broker.backend, capacity=3, name="w1")
    w.handle("t", lambda p, ctx: p)
    assert "not started" in repr(w)
    with w as running:
        assert running is w and w.running
    assert not w.running
    w.stop()  # idempotent


def test_a_handler_exception_is_logged_with_its_traceback(broker, client, caplog):
    def broken(payload, ctx):
        return {}["missing"]

    with serve(broker, {"broken": (broken, False), "refuse": (lambda p, ctx: (_ for _ in ()).throw(lhcluster.Failed("no")), False)}):
        with caplog.at_level("DEBUG", logger="lhcluster"):
            with pytest.raises(lhcluster.Failed):
                client.request("broken", b"")
            with pytest.raises(lhcluster.Failed):
                client.request("refuse", b"")
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "handler for broken raised" in warnings[0].getMessage()
    assert warnings[0].exc_info and warnings[0].exc_info[0] is KeyError
    assert any(r.levelname == "DEBUG" and "refuse" in r.getMessage() for r in caplog.records)


def test_proxy_resends_across_a_broker_restart(tmp_path):
    front, back = f"ipc://{tmp_path}/front", f"ipc://{tmp_path}/back"
    fast = {"heartbeat": 0.2, "reconnect_min": 0.05, "reconnect_max": 0.3}
    broker = lhcluster.Broker(front, back, heartbeat=0.2)
    worker = lhcluster.Worker(back, **fast)
    worker.handle("t", lambda p, ctx: p)
    with worker, lhcluster.ClientProxy(f"ipc://{tmp_path}/proxy", front, resend_initial=0.3, **fast) as proxy:
        with lhcluster.Client(proxy.endpoint) as c:
            assert c.request("t", b"before", timeout=10) == b"before"
            broker.stop()
            handle = c.send("t", b"during", timeout=30)  # buffered by the proxy
            broker = lhcluster.Broker(front, back, heartbeat=0.2)
            try:
                assert handle.result(30) == b"during"
            finally:
                broker.stop()


def test_cancel_a_queued_request(broker, client):
    # No worker: the request waits at the broker, and never runs.
    handle = client.send("nobody.yet", b"")
    assert handle.cancel()
    with pytest.raises(lhcluster.Cancelled):
        handle.result(5)
    assert not handle.cancel(), "the outcome is in: nothing more to cancel"


def test_cancel_a_running_request_tells_its_handler(broker, client):
    started, seen = threading.Event(), queue.Queue()

    def patient(payload, ctx):
        started.set()
        # A long job that checks for a cancel between its steps.
        for _ in range(1000):
            if ctx.is_cancelled():
                seen.put(True)
                return b"stopped"
            time.sleep(0.01)
        seen.put(False)
        return b"done"

    with serve(broker, {"patient": (patient, False)}) as worker:
        handle = client.send("patient", b"")
        assert started.wait(5)
        assert handle.cancel()
        with pytest.raises(lhcluster.Cancelled):
            handle.result(5)
        assert seen.get(timeout=20) is True
        assert worker.stats()["requests_cancelled"] == 1


def test_a_cancel_from_another_thread_ends_a_waiting_result(broker, client):
    # No worker: the request waits at the broker while a thread waits on
    # its result (reading the client's socket meanwhile).
    handle = client.send("nobody.yet", b"")
    outcome = queue.Queue()

    def wait():
        try:
            outcome.put(handle.result(30))
        except lhcluster.Cancelled as e:
            outcome.put(e)

    waiter = threading.Thread(target=wait)
    waiter.start()
    assert not handle.done()
    assert handle.cancel()
    assert isinstance(outcome.get(timeout=20), lhcluster.Cancelled)
    waiter.join(20)
    assert handle.done()


def test_a_finished_request_cannot_be_cancelled(broker, client):
    with serve(broker, {"echo": (lambda p, ctx: p, False)}):
        handle = client.send("echo", b"v")
        assert handle.result(5) == b"v"
        assert not handle.cancel()
        assert handle.result() == b"v"


def test_reload_keys_lets_a_new_client_key_in():
    server_pub, server_sec = lhcluster.curve_keypair()
    a_pub, a_sec = lhcluster.curve_keypair()
    b_pub, b_sec = lhcluster.curve_keypair()
    with lhcluster.Broker(
        "tcp://127.0.0.1:*",
        "tcp://127.0.0.1:*",
        curve_secret_key=server_sec,
        curve_client_keys=[a_pub],
    ) as b:

        def client(secret):
            return lhcluster.Client(
                b.frontend, curve_server_key=server_pub, curve_secret_key=secret
            )

        with client(a_sec) as a:
            assert a.wait_connected(5)
        with client(b_sec) as c:
            assert not c.wait_connected(0.5), "B is not listed yet"
        b.reload_keys(client_keys=f"{a_pub}\n{b_pub}\n")
        with client(b_sec) as c:
            assert c.wait_connected(5)
        with pytest.raises(lhcluster.ConfigError):
            b.reload_keys(client_keys=["not a key"])
        with pytest.raises(TypeError):
            b.reload_keys(client_keys=42)


def test_stop_hands_prefetched_requests_to_another_worker(broker, client):
    # One thread and two prefetched requests: the first blocks until let go.
    started, go = threading.Event(), threading.Event()
    ran = queue.Queue()

    def slow(payload, ctx):
        ran.put(("a", payload))
        if payload == b"first":
            started.set()
            assert go.wait(20)
        return payload

    def fast(payload, ctx):
        ran.put(("b", payload))
        return payload

    a = serve(broker, {"job": (slow, False)}, capacity=1, prefetch=2)
    try:
        first = client.send("job", b"first")
        assert started.wait(5)
        rest = [client.send("job", p) for p in (b"second", b"third")]
        deadline = time.monotonic() + 5
        while a.stats()["requests_received"] < 3:
            assert time.monotonic() < deadline, a.stats()
            time.sleep(0.01)
        with serve(broker, {"job": (fast, False)}):
            stopping = threading.Thread(target=a.stop)
            stopping.start()
            # Given back unstarted, and run by the other worker.
            assert [h.result(10) for h in rest] == [b"second", b"third"]
            assert broker.stats()["requests_returned"] == 2
            go.set()
            assert first.result(10) == b"first"
            stopping.join(20)
            assert not stopping.is_alive()
    finally:
        go.set()
        a.stop()
    seen = []
    while not ran.empty():
        seen.append(ran.get())
    assert sorted(seen) == [("a", b"first"), ("b", b"second"), ("b", b"third")]
