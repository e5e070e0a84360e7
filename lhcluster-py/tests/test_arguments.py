"""Bad arguments raise a clear Python exception, never a crash; the
exception classes form one hierarchy under lhcluster.Error."""

import datetime

import pytest

import lhcluster
from conftest import serve


def test_unknown_keyword_is_a_type_error_naming_it(ep):
    with pytest.raises(TypeError, match="unexpected keyword argument 'heartbeet'") as e:
        lhcluster.Broker(ep(), ep(), heartbeet=1)
    assert "heartbeat" in str(e.value)  # the options are listed
    with pytest.raises(TypeError, match="'capacty'"):
        lhcluster.Worker(ep(), capacty=2)
    with pytest.raises(TypeError, match="'request_timeot'"):
        lhcluster.Client(ep(), request_timeot=1)
    with pytest.raises(TypeError, match="'bogus'"):
        lhcluster.NotifyBroker(ep(), ep(), bogus=True)


def test_wrong_types(ep):
    with pytest.raises(TypeError, match="invalid type"):
        lhcluster.Worker(ep(), capacity="two")
    with pytest.raises(TypeError, match="invalid type"):
        lhcluster.Worker(ep(), capacity=1.5)
    with pytest.raises(TypeError, match="endpoint"):
        lhcluster.Broker(5555, ep())
    with pytest.raises(TypeError, match="endpoint"):
        lhcluster.Client([ep(), 3])
    with pytest.raises(TypeError):
        lhcluster.Client(ep(), name=object())
    with pytest.raises(TypeError, match="multiple values"):
        lhcluster.Broker(ep(), ep(), **{"frontend": ep()})


def test_durations_in_every_form(ep):
    # Seconds as int or float, timedelta, text, and None to turn one off.
    with lhcluster.Broker(ep(), ep(), heartbeat=0.25, shutdown_timeout=datetime.timedelta(seconds=2)) as b:
        with lhcluster.Client(b.frontend, heartbeat="250ms", request_timeout=None, reconnect_max=2):
            pass
    with pytest.raises(ValueError, match="0 or more seconds"):
        lhcluster.Client(ep(), heartbeat=-1.0)
    with pytest.raises(ValueError):
        lhcluster.Client(ep(), heartbeat="soon")


def test_bad_values_are_config_errors(ep):
    with pytest.raises(lhcluster.ConfigError) as e:
        lhcluster.Worker(ep(), capacity=0)
    assert isinstance(e.value, ValueError)
    with pytest.raises(lhcluster.ConfigError):
        lhcluster.Broker("", ep())


def test_bad_endpoints(ep):
    with pytest.raises(lhcluster.Error) as e:
        lhcluster.Broker("nonsense://nowhere", ep())
    assert isinstance(e.value, (lhcluster.EndpointError, lhcluster.ConfigError))
    with pytest.raises(lhcluster.EndpointError) as e:
        lhcluster.Broker("tcp://localhost:1", ep())
    assert "cannot bind" in str(e.value)
    assert isinstance(e.value, OSError)


def test_endpoint_in_use(broker):
    with pytest.raises(lhcluster.EndpointError, match="cannot bind"):
        lhcluster.Broker(broker.frontend, "inproc://py-other-backend")


def test_bad_request_types(client):
    with pytest.raises(ValueError, match="1 to 4294967295"):
        client.request(0, b"")
    with pytest.raises(ValueError):
        client.request(-3, b"")
    with pytest.raises(ValueError):
        client.request(2**32, b"")
    with pytest.raises(TypeError, match="name \\(str\\) or a number"):
        client.request(1.5, b"")
    with pytest.raises(TypeError):
        client.request(None, b"")


def test_bad_payloads(client):
    with pytest.raises(TypeError, match="untyped payload"):
        client.request("t", {"a": 1}, typed=False)
    with pytest.raises(TypeError, match="cannot encode a object"):
        client.request("t", object())
    with pytest.raises(TypeError, match="cannot encode"):
        client.send("t", {"a": {1, 2}})
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(ValueError, match="nested deeper"):
        client.request("t", cyclic)
    with pytest.raises(ValueError, match="64 bits"):
        lhcluster.packb(2**70)


def test_unpackb_refuses_what_is_not_messagepack_as_the_rust_typed_layer_does():
    # 0xc1 is the marker MessagePack reserves: never nil, wherever it is.
    for bad in [b"\xc1", b"\x92\x01\xc1", b"\x81\xa1k\xc1", b"\x81\xc1\x01"]:
        with pytest.raises(lhcluster.DecodeError, match="reserved marker 0xc1"):
            lhcluster.unpackb(bad)
    with pytest.raises(lhcluster.DecodeError, match="bytes left over"):
        lhcluster.unpackb(b"\x01\x02")
    # The same bytes inside a string, a binary or an extension are data.
    value = {"s": "\u00c1", "b": b"\xc1\xc1", "n": None, "l": [1, -2, 3.5, 2**40]}
    assert lhcluster.unpackb(lhcluster.packb(value)) == value
    # Extensions have no Python value, but their data is not read as markers.
    for ext in [b"\xd4\x01\xc1", b"\xc7\x02\x05\xc1\xc1"]:  # fixext 1, ext 8
        with pytest.raises(lhcluster.DecodeError, match="extension type"):
            lhcluster.unpackb(ext)


def test_bad_timeouts(client):
    with pytest.raises(ValueError, match="finite number of seconds"):
        client.request("t", b"", timeout=-1)
    with pytest.raises(ValueError):
        client.send("t", b"", timeout=float("nan"))
    with pytest.raises(ValueError):
        client.wait_connected(float("inf"))


def test_worker_registration_errors(broker):
    w = lhcluster.Worker(broker.backend)
    with pytest.raises(lhcluster.ConfigError, match="at least one handler"):
        w.start()
    with pytest.raises(TypeError, match="callable"):
        w.handle("t", 42)
    with pytest.raises(ValueError):
        w.handle(0, lambda p, ctx: p)
    w.handle("t", lambda p, ctx: p)
    with pytest.raises(ValueError, match="two handlers"):
        w.handle("t", lambda p, ctx: p)
    with pytest.raises(ValueError, match="two handlers"):
        w.handle(lhcluster.request_type_id("t"), lambda p, ctx: p)
    with w:
        with pytest.raises(RuntimeError, match="has started"):
            w.handle("u", lambda p, ctx: p)


def test_subscriber_and_publisher_errors(ep):
    with lhcluster.NotifyBroker(ep(), ep()) as nb:
        with lhcluster.NotifyPublisher(nb.backend) as pub:
            with pytest.raises(lhcluster.ConfigError):
                pub.publish("", b"x")
            with pytest.raises(lhcluster.ConfigError):
                pub.publish("nul\0inside", b"x")
            with pytest.raises(TypeError):
                pub.publish(3, b"x")
        with lhcluster.NotifySubscriber(nb.frontend) as sub:
            with pytest.raises(TypeError, match="callable"):
                sub.on("t", "not a function")


def test_exception_hierarchy():
    statuses = {
        lhcluster.Failed: "failed",
        lhcluster.BadRequest: "bad_request",
        lhcluster.Rejected: "rejected",
        lhcluster.WorkerDeath: "worker_death",
        lhcluster.Redirected: "redirected",
        lhcluster.Overloaded: "overloaded",
        lhcluster.NoWorkers: "no_workers",
        lhcluster.UnknownReplyTo: "unknown_reply_to",
        lhcluster.Expired: "expired",
    }
    for cls, status in statuses.items():
        assert issubclass(cls, lhcluster.StatusError)
        assert issubclass(cls, lhcluster.Error)
        e = cls("why")
        assert (e.status, e.text, str(e)) == (status, "why", "why")
    for cls in (lhcluster.Timeout, lhcluster.Disconnected, lhcluster.NotConnected, lhcluster.Stopped,
                lhcluster.ConfigError, lhcluster.EndpointError, lhcluster.QueueFull, lhcluster.DecodeError):
        assert issubclass(cls, lhcluster.Error)
        assert cls("x").status is None
    assert issubclass(lhcluster.Timeout, TimeoutError)
    assert issubclass(lhcluster.Disconnected, ConnectionError)


def test_a_failing_handler_never_takes_the_process_down(broker, client):
    def explode(payload, ctx):
        raise SystemExit(3)  # even this: only the request fails

    with serve(broker, {"explode": (explode, False)}):
        with pytest.raises(lhcluster.Failed):
            client.request("explode", b"")
