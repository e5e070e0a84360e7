"""The basic flow: a broker, a worker, and clients talking to it directly and
through a client proxy. Runs in one process over loopback TCP and ends on
its own: `python examples/basic.py`."""

import lhcluster
from lhcluster import Flags

# A broker binds a frontend (clients, proxies) and a backend (workers).
# "tcp://127.0.0.1:*" lets the system pick free ports.
with lhcluster.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as broker:
    worker = lhcluster.Worker(broker.backend, capacity=2)

    @worker.handler("greeter.hello", typed=True)
    def hello(req, ctx):
        # Typed: the payload is the decoded MessagePack map.
        return {"text": f"hello, {req['name']}", "attempt": ctx.attempt}

    @worker.handler("bytes.reverse")
    def reverse(payload, ctx):
        # Untyped: bytes in, bytes out.
        return payload[::-1]

    @worker.handler("orders.create", typed=True)
    def create(req, ctx):
        if req["qty"] <= 0:
            raise lhcluster.BadRequest("qty must be positive")
        return {"order_no": ctx.request_id, "eta_days": 3}

    # The proxy buffers requests and re-sends them across broker restarts.
    with worker, lhcluster.ClientProxy("tcp://127.0.0.1:*", broker.frontend) as proxy:
        with lhcluster.Client(broker.frontend) as client:
            print(client.request("greeter.hello", {"name": "ada"}))
            print(client.request("bytes.reverse", b"stressed"))
            try:
                client.request("orders.create", {"qty": 0})
            except lhcluster.BadRequest as e:
                print("refused:", e.status, e.text)

        with lhcluster.Client(proxy.endpoint) as client:
            handle = client.send(
                "orders.create",
                {"qty": 2},
                id=1001,  # the natural id: a duplicate while it runs is REJECTED
                flags=Flags.RECEIPT_ON_SEND | Flags.RETRY_ON_DEATH,
                timeout=10,
            )
            print("a worker has it:", handle.wait_receipt("sent", 5))
            print(handle.result())
            print("proxy stats:", {k: v for k, v in proxy.stats().items() if k.startswith("requests")})
