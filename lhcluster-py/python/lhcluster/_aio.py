"""asyncio glue: what the native dispatcher thread schedules on an event loop."""


def _resolve(batch):
    """Completes futures: ``batch`` is a list of ``(future, ok, value)``.

    Runs on the future's event loop (``call_soon_threadsafe``), one call for
    all the outcomes that arrived together.
    """
    for future, ok, value in batch:
        if future.done():  # cancelled by its awaiter: the outcome is dropped
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
