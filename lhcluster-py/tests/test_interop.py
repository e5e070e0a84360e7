"""Interop with Rust typed code, both ways: the Rust side is real
`#[derive(Request)]` / `#[derive(Notification)]` code (lhcluster-py's
src/interop.rs) run in this process."""

import threading

import pytest

import lhcluster
from lhcluster import _native
from conftest import serve


def test_type_ids_match_the_derive():
    add_id, join_id = _native._interop_type_ids()
    assert lhcluster.request_type_id("interop.add") == add_id
    assert lhcluster.request_type_id("interop.join") == join_id
    # The Rust documentation's reference value.
    assert lhcluster.request_type_id("orders.create") == 0x1D4FB242


def test_payloads_are_maps_keyed_by_field_name():
    # What rmp_serde::to_vec_named writes for `struct Point { x: u8 }`.
    assert lhcluster.packb({"x": 1}) == b"\x81\xa1x\x01"

    from dataclasses import dataclass

    @dataclass
    class Point:
        x: int

    assert lhcluster.packb(Point(1)) == b"\x81\xa1x\x01"


def test_python_client_calls_a_rust_typed_worker(broker, client):
    worker = _native.InteropWorker(broker.backend)
    try:
        got = client.request("interop.add", {"id": 1, "a": 40, "b": 2, "tags": ["x", "y"], "note": None})
        assert got == {"sum": 42, "tags": ["x", "y"], "note": None}
        got = client.request("interop.add", {"id": 2, "a": 1, "b": 1, "tags": [], "note": "hi"})
        assert got["note"] == "hi"
        # The Rust handler's error: FAILED with its text.
        with pytest.raises(lhcluster.Failed, match="negative: -1"):
            client.request("interop.add", {"id": 3, "a": -1, "b": 0, "tags": [], "note": None})
        # A field of the wrong type: the Rust worker answers BAD_REQUEST.
        with pytest.raises(lhcluster.BadRequest):
            client.request("interop.add", {"id": 4, "a": "one", "b": 0, "tags": [], "note": None})
    finally:
        worker.stop()


def test_rust_typed_client_calls_a_python_worker(broker):
    def join(req, ctx):
        return {"text": req["sep"].join(req["parts"]), "count": len(req["parts"])}

    with serve(broker, {"interop.join": (join, True)}):
        assert _native._interop_join(broker.frontend, ["a", "b", "c"], "-") == ("a-b-c", 3)


def test_rust_typed_client_sees_a_python_failure(broker):
    def refuse(req, ctx):
        raise lhcluster.BadRequest("no empty separators")

    with serve(broker, {"interop.join": (refuse, True)}):
        with pytest.raises(lhcluster.BadRequest, match="no empty separators"):
            _native._interop_join(broker.frontend, ["a"], "")


def test_rust_typed_client_refuses_a_python_response_of_another_shape(broker):
    with serve(broker, {"interop.join": (lambda req, ctx: {"text": 5}, True)}):
        with pytest.raises(lhcluster.DecodeError):
            _native._interop_join(broker.frontend, ["a"], "-")


def test_typed_notifications_from_rust_to_python(ep):
    with lhcluster.NotifyBroker(ep(), ep()) as nb:
        got, done = [], threading.Event()
        with lhcluster.NotifySubscriber(nb.frontend) as sub:

            @sub.on("interop.event", typed=True)
            def event(n):
                got.append(n.payload)
                if len(got) == 2:
                    done.set()

            _native._interop_publish(nb.backend, [(1, "one"), (2, "two")])
            assert done.wait(5)
        assert got == [{"seq": 1, "text": "one"}, {"seq": 2, "text": "two"}]


def test_typed_notifications_from_python_to_rust(ep):
    with lhcluster.NotifyBroker(ep(), ep()) as nb:
        sink = _native.InteropSink(nb.frontend)
        try:
            with lhcluster.NotifyPublisher(nb.backend) as pub:
                pub.publish("interop.event", {"seq": 7, "text": "from python"})
                pub.publish("interop.event", {"seq": 8, "text": "again"})
            assert sink.take(2, 5) == [(7, "from python"), (8, "again")]
        finally:
            sink.stop()
