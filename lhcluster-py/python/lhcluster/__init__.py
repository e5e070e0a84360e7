"""lhcluster: brokered request queuing and notifications over ZeroMQ.

Python bindings of the lhcluster Rust library (one native extension,
``lhcluster._native``; the wire protocol is the library's, not a second
implementation). Every role runs on Rust threads; the GIL is released
whenever Rust waits or does I/O, and taken only to run your handlers.

Roles: :class:`Broker`, :class:`Worker`, :class:`Client`,
:class:`ClientProxy`, :class:`NotifyBroker`, :class:`NotifyPublisher`,
:class:`NotifySubscriber`. Errors: :class:`Error` and its subclasses (see
:mod:`lhcluster.errors`). docs/python.md is the guide.
"""

import asyncio
import collections
import enum
import inspect
import logging
import threading
import weakref
from typing import Any, Callable, NamedTuple, Optional, Union

from . import _native, errors
from ._native import (
    Broker,
    Client,
    ClientProxy,
    NotifyBroker,
    NotifyPublisher,
    RequestContext,
    Response,
    curve_available,
    curve_keypair,
    packb,
    request_type_id,
    unpackb,
)
# The exception classes, defined once in lhcluster.errors (its __all__ names
# them); re-exported here, as asyncio's package re-exports its submodules'.
from .errors import *  # noqa: F403

__version__ = _native.__version__

__all__ = [
    "Broker",
    "Client",
    "ClientProxy",
    "Worker",
    "NotifyBroker",
    "NotifyPublisher",
    "NotifySubscriber",
    "Notification",
    "RequestContext",
    "Response",
    "Flags",
    "request_type_id",
    "packb",
    "unpackb",
    "curve_available",
    "curve_keypair",
]
__all__ += errors.__all__

_log = logging.getLogger("lhcluster")


class Flags(enum.IntFlag):
    """Per-request delivery flags (``flags=`` of :meth:`Client.request`).

    Their exact promises are in docs/protocol.md.
    """

    NONE = 0
    #: One-way request: no response, the client learns of delivery.
    ONE_WAY = 1 << 0
    #: The worker reports when it accepted the request (receipt "received").
    RECEIPT_ON_RECEIVE = 1 << 1
    #: The broker reports when it handed the request to a worker (receipt "sent").
    RECEIPT_ON_SEND = 1 << 2
    #: If the worker dies, the client gets WORKER_DEATH.
    NOTIFY_ON_DEATH = 1 << 3
    #: If the worker dies, the broker re-dispatches the request (bounded tries).
    RETRY_ON_DEATH = 1 << 4
    #: A later request with the same (type, id) may take over the response.
    ALLOW_REDIRECT = 1 << 5
    #: When taken over, this requester gets REDIRECTED.
    NOTIFY_ON_REDIRECT = 1 << 6
    #: Answer NO_WORKERS at once when no worker serves the type.
    FAIL_FAST = 1 << 7


HandlerFn = Callable[[Any, RequestContext], Any]


def _handler_failed(request_type: str, exc: BaseException) -> None:
    """Logs a handler's exception (the request ends FAILED or BAD_REQUEST):
    with its traceback at warning level, or at debug level for an
    :class:`Error` raised on purpose (``Failed``, ``BadRequest``)."""
    if isinstance(exc, Error):
        _log.debug("handler for %s: %s: %s", request_type, type(exc).__name__, exc)
    else:
        _log.warning("handler for %s raised", request_type, exc_info=exc)


def _with_context(fn: Callable[..., Any]) -> HandlerFn:
    """A handler called as ``fn(payload, ctx)``: functions that take only
    the payload, and coroutine functions, are adapted."""
    if not callable(fn):
        raise TypeError(f"a handler must be callable, not {type(fn).__name__}")
    if inspect.iscoroutinefunction(fn):
        # Each call runs to completion, in its own event loop, on the
        # worker thread that took the request.
        if _positional_count(fn) == 1:
            return lambda payload, ctx: asyncio.run(fn(payload))
        return lambda payload, ctx: asyncio.run(fn(payload, ctx))
    if _positional_count(fn) == 1:
        return lambda payload, ctx: fn(payload)
    return fn


def _positional_count(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in kinds)


class Worker:
    """A worker: serves request types with Python functions.

    ``Worker(broker, **options)``: ``broker`` is a broker's backend endpoint
    (or a list of them, for failover); the options are the Rust
    ``WorkerConfig``'s: ``capacity`` (how many requests run at once, each on
    its own thread; default 1), ``prefetch`` (how many more the broker may
    hand it, waiting here in order for a free thread; default 0: see
    docs/guide.md), ``name``, ``heartbeat``, ``inline``,
    ``curve_server_key``... An unknown option raises ``TypeError`` here.

    Register handlers, then :meth:`start` (or use ``with``)::

        worker = Worker(broker.backend, capacity=4)

        @worker.handler("resize", typed=True)
        def resize(req, ctx):
            return {"width": req["width"] // 2}

        with worker:
            ...

    A handler is called as ``fn(payload, ctx)`` (or ``fn(payload)``) on one
    of the worker's threads with the GIL held. ``payload`` is ``bytes``, or
    the decoded MessagePack value when registered with ``typed=True`` (a
    dict for a Rust struct); ``ctx`` is a :class:`RequestContext`. It
    returns the response: ``bytes`` (or ``None`` for an empty one) when
    untyped, any MessagePack-able value when typed. An exception ends the
    request as FAILED with the exception's text (:class:`BadRequest`: as
    BAD_REQUEST).
    """

    def __init__(self, broker: Union[str, list], **options: Any) -> None:
        _native.Worker._check(broker, **options)
        self._broker = broker
        self._options = options
        self._handlers: dict = {}
        self._native: Optional[_native.Worker] = None
        self._lock = threading.Lock()

    def handle(self, request_type: Union[str, int], fn: Callable[..., Any], *, typed: bool = False) -> Callable[..., Any]:
        """Registers ``fn`` for ``request_type`` (a name, hashed as Rust's
        ``#[derive(Request)]`` does, or a number); returns ``fn``."""
        type_id = request_type_id(request_type) if isinstance(request_type, str) else request_type
        if not isinstance(type_id, int) or isinstance(type_id, bool) or not 0 < type_id < 2**32:
            raise ValueError(f"a request type is a name or a number from 1 to 4294967295, not {request_type!r}")
        with self._lock:
            if self._native is not None:
                raise RuntimeError("the worker has started: register handlers before start()")
            if type_id in self._handlers:
                raise ValueError(f"two handlers for request type {request_type!r} ({type_id})")
            name = request_type if isinstance(request_type, str) else None
            self._handlers[type_id] = (name, _with_context(fn), bool(typed))
        return fn

    def handler(self, request_type: Union[str, int], *, typed: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of :meth:`handle`."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            return self.handle(request_type, fn, typed=typed)

        return register

    def start(self) -> "Worker":
        """Connects to the broker and starts serving; returns the worker."""
        with self._lock:
            if self._native is None:
                if not self._handlers:
                    raise ConfigError("a worker needs at least one handler")
                handlers = [(t, name, fn, typed) for t, (name, fn, typed) in self._handlers.items()]
                self._native = _native.Worker(self._broker, handlers, **self._options)
        return self

    @property
    def running(self) -> bool:
        """Whether :meth:`start` was called (and :meth:`stop` not yet)."""
        return self._native is not None

    def stats(self) -> dict:
        """A snapshot of the worker's statistics."""
        if self._native is None:
            raise Stopped("the worker is not running")
        return self._native.stats()

    def stop(self) -> None:
        """Stops (idempotent): running handlers finish first; prefetched
        requests not started go back to the broker, for another worker."""
        with self._lock:
            native, self._native = self._native, None
        if native is not None:
            native.stop()

    def abort(self) -> None:
        """Stops at once: the broker declares this worker dead."""
        with self._lock:
            native, self._native = self._native, None
        if native is not None:
            native.abort()

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._native is not None else "not started"
        return f"Worker(broker={self._broker!r}, types={len(self._handlers)}, {state})"


class Notification(NamedTuple):
    """A notification received: its topic, payload (``bytes``, or the
    decoded value when typed) and publisher-chosen id (or ``None``)."""

    topic: str
    payload: Any
    id: Optional[int]

    def decode(self) -> Any:
        """The payload decoded from MessagePack."""
        return unpackb(bytes(self.payload)) if isinstance(self.payload, (bytes, bytearray)) else self.payload


NotifyCallback = Callable[[Notification], Any]


class NotifySubscriber:
    """A notification subscriber.

    ``NotifySubscriber(endpoint, *, topics=(), prefixes=(), typed=False,
    **options)``: ``endpoint`` is a notify broker's frontend (or a list, one
    used at a time); the options are the Rust ``NotifySubscriberConfig``'s.
    Returns once its subscriptions are in force.

    Notifications go to the callback registered for their topic
    (:meth:`on`, :meth:`on_prefix`), called in order on the subscriber's
    thread; the others are queued for iteration, ``for n in subscriber``
    or ``async for n in subscriber`` (decoded from MessagePack when
    ``typed``). A callback may return ``"unsubscribe"`` (stop receiving its
    topic) or ``"stop"`` (stop the subscriber).
    """

    def __init__(self, endpoint: Union[str, list], *, topics: Any = (), prefixes: Any = (), typed: bool = False, **options: Any) -> None:
        self._callbacks: dict = {}
        self._prefix_callbacks: list = []
        self._typed = bool(typed)
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._waiters: collections.deque = collections.deque()
        self._closed = False
        # A weak reference: the native subscriber must not keep this object
        # alive (a cycle through Rust that no collector sees), so that one
        # dropped without stop() is collected, and stopped, like any role.
        method = weakref.WeakMethod(self._dispatch)

        def dispatch(topic: str, payload: bytes, notify_id: Optional[int]) -> Optional[str]:
            bound = method()
            return None if bound is None else bound(topic, payload, notify_id)

        self._native = _native.NotifySubscriber(endpoint, dispatch, topics=list(topics), prefixes=list(prefixes), **options)

    # Subscriptions and callbacks.

    def on(self, topic: str, fn: Optional[NotifyCallback] = None, *, typed: bool = False) -> Any:
        """Calls ``fn(notification)`` for each notification on ``topic``
        (exact match), subscribing to it. ``typed``: the payload decoded
        from MessagePack. Usable as a decorator: ``@subscriber.on("t")``."""

        def register(fn: NotifyCallback) -> NotifyCallback:
            if not callable(fn):
                raise TypeError(f"a callback must be callable, not {type(fn).__name__}")
            self._callbacks[topic] = (fn, bool(typed))
            self._native.subscribe(topic)
            return fn

        return register if fn is None else register(fn)

    def on_prefix(self, prefix: str, fn: Optional[NotifyCallback] = None, *, typed: bool = False) -> Any:
        """Like :meth:`on`, for every topic that starts with ``prefix``
        (exact callbacks win)."""

        def register(fn: NotifyCallback) -> NotifyCallback:
            if not callable(fn):
                raise TypeError(f"a callback must be callable, not {type(fn).__name__}")
            self._prefix_callbacks.append((prefix, fn, bool(typed)))
            self._native.subscribe_prefix(prefix)
            return fn

        return register if fn is None else register(fn)

    def subscribe(self, topic: str) -> None:
        """Subscribes to ``topic`` (its notifications go to the iterator)."""
        self._native.subscribe(topic)

    def subscribe_prefix(self, prefix: str) -> None:
        """Subscribes to every topic starting with ``prefix``."""
        self._native.subscribe_prefix(prefix)

    def unsubscribe(self, topic: str) -> None:
        """Removes the subscription (and callback) of ``topic``."""
        self._callbacks.pop(topic, None)
        self._native.unsubscribe(topic)

    def unsubscribe_prefix(self, prefix: str) -> None:
        """Removes a prefix subscription (and its callbacks)."""
        self._prefix_callbacks = [c for c in self._prefix_callbacks if c[0] != prefix]
        self._native.unsubscribe_prefix(prefix)

    def topics(self) -> list:
        """The exact topics subscribed to."""
        return self._native.topics()

    def prefixes(self) -> list:
        """The prefixes subscribed to."""
        return self._native.prefixes()

    @property
    def endpoint(self) -> str:
        """The endpoint in use."""
        return self._native.endpoint

    def stats(self) -> dict:
        """A snapshot of the subscriber's statistics."""
        return self._native.stats()

    def stop(self) -> None:
        """Stops the subscriber (idempotent); iterators end."""
        self._native.stop()
        self._close()

    def __enter__(self) -> "NotifySubscriber":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # Delivery (called by the native subscriber's thread, in order).

    def _dispatch(self, topic: str, payload: bytes, notify_id: Optional[int]) -> Optional[str]:
        callback = self._callbacks.get(topic)
        if callback is None:
            for prefix, fn, typed in self._prefix_callbacks:
                if topic.startswith(prefix):
                    callback = (fn, typed)
                    break
        if callback is None:
            self._push(Notification(topic, self._decode(payload, self._typed, topic), notify_id))
            return None
        fn, typed = callback
        try:
            value = self._decode(payload, typed, topic)
            if isinstance(value, _Undecodable):
                return None
            outcome = fn(Notification(topic, value, notify_id))
        except Exception:
            _log.exception("notification callback for %r raised", topic)
            return None
        if outcome in ("unsubscribe", "stop"):
            if outcome == "unsubscribe":
                self._callbacks.pop(topic, None)
            return outcome
        return None

    @staticmethod
    def _decode(payload: bytes, typed: bool, topic: str) -> Any:
        if not typed:
            return payload
        try:
            return unpackb(payload)
        except DecodeError:
            _log.warning("notification on %r is not MessagePack: skipped", topic)
            return _Undecodable()

    def _push(self, notification: Notification) -> None:
        if isinstance(notification.payload, _Undecodable):
            return
        with self._cond:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._hand_over, future, notification)
                    return
                except RuntimeError:  # its loop is closed
                    continue
            self._queue.append(notification)
            self._cond.notify()

    def _hand_over(self, future: "asyncio.Future", notification: Notification) -> None:
        if future.done():  # the awaiter went away: keep it for the next
            with self._cond:
                self._queue.appendleft(notification)
                self._cond.notify()
        else:
            future.set_result(notification)

    def _close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            waiters, self._waiters = list(self._waiters), collections.deque()
        for loop, future in waiters:
            try:
                loop.call_soon_threadsafe(_cancel_with_stop, future)
            except RuntimeError:
                pass

    # Iteration.

    def recv(self, timeout: Optional[float] = None) -> Optional[Notification]:
        """The next queued notification, waiting up to ``timeout`` seconds
        (``None``: until one comes or the subscriber stops); ``None`` if
        there is none by then."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._queue:
                if self._closed or self._native.is_stopped():
                    return None
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return None
                self._cond.wait(left)
            return self._queue.popleft()

    def __iter__(self) -> "NotifySubscriber":
        return self

    def __next__(self) -> Notification:
        n = self.recv()
        if n is None:
            raise StopIteration
        return n

    def __aiter__(self) -> "NotifySubscriber":
        return self

    async def __anext__(self) -> Notification:
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._queue:
                return self._queue.popleft()
            if self._closed or self._native.is_stopped():
                raise StopAsyncIteration
            future = loop.create_future()
            self._waiters.append((loop, future))
        try:
            return await future
        except Stopped:
            raise StopAsyncIteration from None


class _Undecodable:
    pass


def _cancel_with_stop(future: "asyncio.Future") -> None:
    if not future.done():
        future.set_exception(Stopped("the subscriber has stopped"))
