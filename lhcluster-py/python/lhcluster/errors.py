"""The exceptions of lhcluster: one class per outcome, all under :class:`Error`.

Every exception carries ``text`` (the message that came with the outcome)
and ``status`` (the protocol status as its lower-case name, such as
``"failed"``, for outcomes a broker or worker answered; ``None`` otherwise).
"""

from typing import Optional

__all__ = [
    "Error",
    "StatusError",
    "Failed",
    "BadRequest",
    "Rejected",
    "WorkerDeath",
    "Redirected",
    "Overloaded",
    "NoWorkers",
    "UnknownReplyTo",
    "Expired",
    "Forbidden",
    "Timeout",
    "Disconnected",
    "NotConnected",
    "Stopped",
    "Cancelled",
    "ProtocolError",
    "InternalError",
    "TooLarge",
    "ConfigError",
    "EndpointError",
    "ZmqError",
    "QueueFull",
    "DecodeError",
]


class Error(Exception):
    """The base of every lhcluster exception."""

    status: Optional[str] = None

    def __init__(self, text: str = "", status: Optional[str] = None) -> None:
        super().__init__(text)
        self.text = text
        if status is not None:
            self.status = status


class StatusError(Error):
    """The request ended with a status other than OK (the subclasses name it)."""


class Failed(StatusError):
    """FAILED: the handler raised (or returned an error); ``text`` is its message.

    Raise it in a handler to fail a request with a message of your choice.
    """

    status = "failed"


class BadRequest(StatusError):
    """BAD_REQUEST: the payload did not decode, or the handler refused it.

    Raise it in a handler to answer BAD_REQUEST instead of FAILED.
    """

    status = "bad_request"


class Rejected(StatusError):
    """REJECTED: a request with the same (type, id) is already pending or running."""

    status = "rejected"


class WorkerDeath(StatusError):
    """WORKER_DEATH: the worker running the request died, and no retry was left."""

    status = "worker_death"


class Redirected(StatusError):
    """REDIRECTED: a later duplicate took over the response (ALLOW_REDIRECT)."""

    status = "redirected"


class Overloaded(StatusError):
    """OVERLOADED: a queue bound of the broker is reached."""

    status = "overloaded"


class NoWorkers(StatusError):
    """NO_WORKERS: no worker serves the type (FAIL_FAST)."""

    status = "no_workers"


class UnknownReplyTo(StatusError):
    """UNKNOWN_REPLY_TO: the named reply-to client is not connected."""

    status = "unknown_reply_to"


class Expired(StatusError):
    """EXPIRED: the deadline passed before a worker took the request; it did not run."""

    status = "expired"


class Forbidden(StatusError):
    """FORBIDDEN: the client's CURVE key may not send this request type; it did not run."""

    status = "forbidden"


class Timeout(Error, TimeoutError):
    """No outcome within the timeout."""


class Disconnected(Error, ConnectionError):
    """The broker went away before the outcome arrived."""


class NotConnected(Disconnected):
    """The client had no session with a broker when the request was sent."""


class Stopped(Error):
    """The role has stopped."""


class Cancelled(Error):
    """The request was cancelled by its caller (``Response.cancel()``)."""


class ProtocolError(Error):
    """The peer answered something this version cannot understand."""


class InternalError(Error):
    """A bug in lhcluster (a panic); whether the request ran is unknown."""


class TooLarge(Error, ValueError):
    """The request is larger than the broker accepts (its ``max_message_size``):
    it was not sent."""


class ConfigError(Error, ValueError):
    """A configuration value that no role can run with (or an invalid topic)."""


class EndpointError(Error, OSError):
    """An endpoint could not be bound or connected to."""


class ZmqError(Error, OSError):
    """Another ZeroMQ failure."""


class QueueFull(Error):
    """The publisher's queue is full: the notification was dropped."""


class DecodeError(Error, ValueError):
    """A payload is not the MessagePack expected."""
