"""Type stubs of lhcluster's native extension (the Rust half of the package).

Import these names from :mod:`lhcluster`, not from here. Options given as
``**options`` are the fields of the matching Rust config (``BrokerConfig``,
``ClientConfig``...; docs/operations.md lists them): an unknown one raises
``TypeError``, a bad value ``lhcluster.ConfigError``. Durations are seconds
(``int``/``float``), ``datetime.timedelta`` or text like ``"250ms"``;
``None`` turns an optional one off.
"""

import asyncio
from typing import Any, Callable, Generator, Literal, Optional, Sequence, TypeVar, Union, type_check_only

Endpoints = Union[str, Sequence[str]]
RequestType = Union[str, int]
Payload = Any

__version__: str

def request_type_id(name: str) -> int:
    """The request type id of a name: 32-bit FNV-1a, 0 mapped to 1 (as Rust's
    ``#[derive(Request)]``)."""

def packb(value: Any) -> bytes:
    """MessagePack of ``value`` (dicts and dataclasses as maps keyed by field name)."""

def unpackb(data: bytes) -> Any:
    """The value of one MessagePack document (``b""`` is ``None``)."""

def curve_available() -> bool:
    """Whether the built-in libzmq has CURVE."""

def curve_keypair() -> tuple[str, str]:
    """A new CURVE key pair as Z85 text: ``(public, secret)``."""

_R = TypeVar("_R", bound="_Role")

@type_check_only
class _Role:
    """What every role class has (a stub-only base: at run time each class
    has these methods of its own)."""

    def stats(self) -> dict[str, Any]:
        """A snapshot of the role's statistics."""
    def stop(self) -> None:
        """Stops the role (idempotent)."""
    def __enter__(self: _R) -> _R: ...
    def __exit__(self, *exc: Any) -> Literal[False]: ...

class Broker(_Role):
    """Binds a frontend (clients, proxies) and a backend (workers); starts at once."""

    def __init__(self, frontend: str, backend: str, **options: Any) -> None: ...
    @property
    def frontend(self) -> str:
        """The frontend endpoint (the port chosen, for ``tcp://host:*``)."""
    @property
    def backend(self) -> str:
        """The backend endpoint."""
    @property
    def cluster_endpoint(self) -> Optional[str]:
        """The cluster endpoint, with ``cluster_bind``."""
    def reload_keys(
        self,
        client_keys: Optional[Union[str, Sequence[str]]] = None,
        worker_keys: Optional[Union[str, Sequence[str]]] = None,
    ) -> None:
        """New allow lists (a key file's text or its lines) from the next
        handshake on, as SIGHUP for ``lhcluster broker``; ``None`` keeps one."""

class ClientProxy(_Role):
    """Buffers clients' requests and re-sends them until confirmed, across broker restarts."""

    def __init__(self, bind: str, broker: Endpoints, **options: Any) -> None: ...
    @property
    def endpoint(self) -> str:
        """Where clients connect."""
    def reload_keys(self, client_keys: Union[str, Sequence[str]]) -> None:
        """A new client allow list from the next handshake on."""

class NotifyBroker(_Role):
    """Fans notifications out by topic: publishers on the backend, subscribers on the frontend."""

    def __init__(self, frontend: str, backend: str, **options: Any) -> None: ...
    @property
    def frontend(self) -> str: ...
    @property
    def backend(self) -> str: ...
    def reload_keys(
        self,
        subscriber_keys: Optional[Union[str, Sequence[str]]] = None,
        publisher_keys: Optional[Union[str, Sequence[str]]] = None,
    ) -> None:
        """New allow lists from the next handshake on; ``None`` keeps one."""

class NotifyPublisher(_Role):
    """Publishes notifications; ``publish`` never blocks."""

    def __init__(self, endpoint: Endpoints, **options: Any) -> None: ...
    def publish(
        self,
        topic: str,
        payload: Payload = None,
        *,
        id: Optional[int] = None,
        typed: Optional[bool] = None,
    ) -> None:
        """Publishes ``payload`` (bytes as is, other values as MessagePack) on
        ``topic``; raises ``QueueFull`` when the queue is full."""
    def wait_connected(self, timeout: float) -> bool: ...
    @property
    def endpoint(self) -> str: ...

class Response:
    """The eventual outcome of a request sent with ``Client.send``."""

    @property
    def request_type(self) -> int: ...
    @property
    def request_id(self) -> int: ...
    def result(self, timeout: Optional[float] = None) -> Any:
        """The response, or raises the outcome's exception; ``Timeout`` if
        none within ``timeout`` (the request goes on)."""
    def cancel(self) -> bool:
        """Takes the request back: True if this ended it (Cancelled), False
        if the outcome had arrived."""
    def done(self) -> bool: ...
    def receipts(self) -> list[str]:
        """``"sent"`` / ``"received"`` receipts so far."""
    def wait_receipt(self, kind: str, timeout: float) -> bool: ...
    def __await__(self) -> Generator[Any, None, Any]:
        """``await response``: the outcome, without blocking the event loop."""

class Client(_Role):
    """Sends requests to a broker (or a client proxy)."""

    def __init__(self, broker: Endpoints, **options: Any) -> None: ...
    def request(
        self,
        request_type: RequestType,
        payload: Payload = None,
        *,
        timeout: Optional[float] = None,
        id: Optional[int] = None,
        flags: int = 0,
        typed: Optional[bool] = None,
    ) -> Any:
        """Sends and waits (without the GIL): the response (``bytes``, or the
        decoded value when typed), or an ``lhcluster.Error``."""
    def send(
        self,
        request_type: RequestType,
        payload: Payload = None,
        *,
        timeout: Optional[float] = None,
        id: Optional[int] = None,
        flags: int = 0,
        typed: Optional[bool] = None,
        reply_to: Optional[str] = None,
        one_way: bool = False,
    ) -> Response:
        """Sends and returns the handle at once."""
    def request_async(
        self,
        request_type: RequestType,
        payload: Payload = None,
        *,
        timeout: Optional[float] = None,
        id: Optional[int] = None,
        flags: int = 0,
        typed: Optional[bool] = None,
        reply_to: Optional[str] = None,
        one_way: bool = False,
    ) -> "asyncio.Future[Any]":
        """Sends and returns a future of the running loop: ``await`` it."""
    def wait_connected(self, timeout: float) -> bool: ...
    def next_id(self) -> int: ...
    def next_event(self, timeout: Optional[float] = None, *, typed: bool = False) -> Optional[dict[str, Any]]:
        """The next event (reply-to responses, receipts, connection changes)."""

class RequestContext:
    """What a handler knows about its request."""

    @property
    def request_type(self) -> int: ...
    @property
    def type_name(self) -> Optional[str]: ...
    @property
    def request_id(self) -> int: ...
    @property
    def flags(self) -> int: ...
    @property
    def attempt(self) -> int: ...
    @property
    def deadline(self) -> Optional[float]:
        """When the requester stops waiting, on the ``time.monotonic()`` clock."""
    def remaining(self) -> Optional[float]:
        """Seconds left until the deadline (0 once passed), or ``None``."""
    def is_expired(self) -> bool: ...
    def is_cancelled(self) -> bool:
        """Whether the requester cancelled the request (cooperative)."""

class Worker(_Role):
    """A running worker (use ``lhcluster.Worker``)."""

    def __init__(
        self,
        broker: Endpoints,
        handlers: list[tuple[int, Optional[str], Callable[[Any, RequestContext], Any], bool]],
        **options: Any,
    ) -> None: ...
    @staticmethod
    def _check(broker: Endpoints, **options: Any) -> None: ...
    def abort(self) -> None: ...

class NotifySubscriber(_Role):
    """A running subscriber (use ``lhcluster.NotifySubscriber``)."""

    def __init__(
        self,
        endpoint: Endpoints,
        dispatch: Callable[[str, bytes, Optional[int]], Optional[str]],
        **options: Any,
    ) -> None: ...
    def subscribe(self, topic: str) -> None: ...
    def subscribe_prefix(self, prefix: str) -> None: ...
    def unsubscribe(self, topic: str) -> None: ...
    def unsubscribe_prefix(self, prefix: str) -> None: ...
    def topics(self) -> list[str]: ...
    def prefixes(self) -> list[str]: ...
    @property
    def endpoint(self) -> str: ...
    def is_stopped(self) -> bool: ...
    def wait_stopped(self, timeout: float) -> bool: ...

# Test helpers: Rust typed code for the interop tests (not API).
class InteropWorker:
    def __init__(self, backend: str) -> None: ...
    def stop(self) -> None: ...

class InteropSink:
    def __init__(self, frontend: str) -> None: ...
    def take(self, count: int, timeout: float) -> list[tuple[int, str]]: ...
    def stop(self) -> None: ...

def _interop_type_ids() -> tuple[int, int]: ...
def _interop_join(frontend: str, parts: list[str], sep: str) -> tuple[str, int]: ...
def _interop_publish(backend: str, events: list[tuple[int, str]]) -> None: ...

class BenchEcho:
    """A Rust echo worker (``bench.echo``) for ``python -m lhcluster.bench``."""

    def __init__(self, backend: str, inline: bool, capacity: int = 64) -> None: ...
    def stop(self) -> None: ...
