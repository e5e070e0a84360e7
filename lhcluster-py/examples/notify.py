"""Notifications: a notify broker, a publisher and subscribers with
callbacks, a prefix, and iteration. `python examples/notify.py`."""

import threading

import lhcluster

with lhcluster.NotifyBroker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as nb:
    done = threading.Event()
    with lhcluster.NotifySubscriber(nb.frontend) as sub:

        @sub.on("orders.shipped", typed=True)
        def shipped(n):
            print("shipped:", n.payload["order_no"])

        @sub.on_prefix("metrics.")
        def metric(n):
            print("metric", n.topic, n.payload)
            done.set()

        sub.subscribe("alerts")  # no callback: read by iteration below

        with lhcluster.NotifyPublisher(nb.backend) as pub:
            pub.publish("orders.shipped", {"order_no": 7})  # a dict: MessagePack
            pub.publish("alerts", b"disk 91%", id=1)  # bytes: as they are
            pub.publish("metrics.cpu", b"0.42")

        alert = sub.recv(timeout=5)
        print("alert:", alert.topic, alert.payload, alert.id)
        done.wait(5)
