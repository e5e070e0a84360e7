"""asyncio: a thousand requests in flight from one coroutine, no thread per
request. `python examples/asyncio_client.py`."""

import asyncio
import time

import lhcluster


async def main(client):
    started = time.perf_counter()
    squares = await asyncio.gather(*(client.request_async("math.square", n) for n in range(1000)))
    print(f"{len(squares)} responses in {time.perf_counter() - started:.3f}s, last {squares[-1]}")
    try:
        await client.request_async("math.square", "not a number")
    except lhcluster.Failed as e:
        print("failed:", e.text)


with lhcluster.Broker("tcp://127.0.0.1:*", "tcp://127.0.0.1:*") as broker:
    worker = lhcluster.Worker(broker.backend, capacity=4)
    worker.handle("math.square", lambda n, ctx: n * n, typed=True)
    with worker, lhcluster.Client(broker.frontend) as client:
        asyncio.run(main(client))
