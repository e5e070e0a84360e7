"""``python -m lhcluster.bench``: Python client requests/s against a Rust echo
worker, beside a plain pyzmq DEALER→ROUTER echo round trip in the same run.

Both keep the same number of requests in flight (``--window``) over loopback
TCP. lhcluster: a broker and a Rust echo worker of capacity ``--window`` in
this process (Rust threads; as ``lhcluster bench`` does, so that the worker
is not the bottleneck), the Python client sending through ``Client.send`` handles (and,
with ``--asyncio``, ``request_async``). pyzmq: a DEALER in this process, a
ROUTER echoing in a child process. The figures of the project's machine are
in docs/benchmarks.md.
"""

import argparse
import asyncio
import collections
import contextlib
import multiprocessing
import statistics
import time
from typing import Iterator, Optional

from . import Broker, Client, _native


@contextlib.contextmanager
def _echo_client(n: int, payload: bytes, inline: bool, capacity: int) -> Iterator[Client]:
    """A client of a broker with a Rust echo worker of ``capacity`` in this
    process, warmed up (sessions, the worker's registration) with
    ``min(n, 500)`` requests."""
    with Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as broker:
        echo = _native.BenchEcho(broker.backend, inline, capacity)
        try:
            with Client(broker.frontend, request_timeout=60) as client:
                client.wait_connected(5)
                for _ in range(min(n, 500)):
                    client.request("bench.echo", payload)
                yield client
        finally:
            echo.stop()


def lhcluster_handles(n: int, window: int, size: int, inline: bool) -> float:
    """Requests/s through a broker to a Rust echo worker, a window of handles."""
    payload = b"x" * size
    with _echo_client(n, payload, inline, window) as client:
        inflight: collections.deque = collections.deque()
        sent = done = 0
        started = time.perf_counter()
        while done < n:
            while sent < n and len(inflight) < window:
                inflight.append(client.send("bench.echo", payload))
                sent += 1
            inflight.popleft().result()
            done += 1
        return n / (time.perf_counter() - started)


def lhcluster_asyncio(n: int, window: int, size: int, inline: bool) -> float:
    """Requests/s with ``request_async``, at most ``window`` in flight."""
    payload = b"x" * size
    with _echo_client(n, payload, inline, window) as client:

        async def run() -> float:
            started = time.perf_counter()
            pending: set = set()
            sent = 0
            while sent < n or pending:
                while sent < n and len(pending) < window:
                    pending.add(client.request_async("bench.echo", payload))
                    sent += 1
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for f in finished:
                    f.result()
            return n / (time.perf_counter() - started)

        return asyncio.run(run())


def _router_echo(ports: "multiprocessing.Queue") -> None:
    import zmq

    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    ports.put(router.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        msg = router.recv_multipart()
        if msg[-1] == b"STOP":
            break
        router.send_multipart(msg)
    router.close()
    ctx.term()


def pyzmq_round_trip(n: int, window: int, size: int) -> Optional[float]:
    """Round trips/s of a pyzmq DEALER against a ROUTER echo; ``None``
    without pyzmq."""
    try:
        import zmq
    except ImportError:
        return None
    mp = multiprocessing.get_context("spawn")  # never fork a process with Rust threads
    ports = mp.Queue()
    child = mp.Process(target=_router_echo, args=(ports,), daemon=True)
    child.start()
    port = ports.get(timeout=30)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(f"tcp://127.0.0.1:{port}")
    payload = b"x" * size
    for _ in range(min(n, 500)):
        dealer.send(payload)
        dealer.recv()
    sent = done = 0
    started = time.perf_counter()
    while sent < min(window, n):
        dealer.send(payload)
        sent += 1
    while done < n:
        dealer.recv()
        done += 1
        if sent < n:
            dealer.send(payload)
            sent += 1
    rate = n / (time.perf_counter() - started)
    dealer.send(b"STOP")
    child.join(10)
    dealer.close()
    ctx.term()
    return rate


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lhcluster.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=20000)
    parser.add_argument("-w", "--window", type=int, default=64)
    parser.add_argument("-s", "--size", type=int, default=64, help="payload bytes")
    parser.add_argument("--inline", action="store_true", help="the echo worker runs on its I/O thread")
    parser.add_argument("--asyncio", action="store_true", help="also measure request_async")
    parser.add_argument(
        "--runs", type=int, default=1, help="paired runs (pyzmq, then lhcluster, each run); medians printed"
    )
    args = parser.parse_args(argv)
    print(f"requests={args.requests} window={args.window} payload={args.size} B runs={args.runs}")
    names = ["pyzmq DEALER->ROUTER echo", "lhcluster Client.send (handles)"]
    if args.asyncio:
        names.append("lhcluster request_async")
    rates: dict = {name: [] for name in names}
    ratios: dict = {name: [] for name in names[1:]}
    for _ in range(max(1, args.runs)):
        base = pyzmq_round_trip(args.requests, args.window, args.size)
        run = [base, lhcluster_handles(args.requests, args.window, args.size, args.inline)]
        if args.asyncio:
            run.append(lhcluster_asyncio(args.requests, args.window, args.size, args.inline))
        for name, value in zip(names, run):
            rates[name].append(value)
            if base and name in ratios:
                ratios[name].append(value / base)
    for name in names:
        values = [v for v in rates[name] if v is not None]
        if not values:
            print(f"{name:36} (pyzmq not installed)")
            continue
        ratio = f"  {statistics.median(ratios[name]):.2f}x pyzmq" if ratios.get(name) else ""
        print(f"{name:36} {statistics.median(values):10.0f} req/s{ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
