"""``python -m lhcluster``: run a cluster file, or one worker, from Python.

``python -m lhcluster up cluster.toml [--only NAME]`` reads the same TOML as
``lhcluster up`` (tables ``[[broker]]``, ``[[proxy]]``, ``[[notify_broker]]``,
``[[worker]]``, each key a field of that role's config) and runs its roles in
this process until SIGINT or SIGTERM. A worker table may name a Python
handler, ``handler = "mypkg.handlers:resize"``: a function serving every type
of its ``types``, or a class whose methods serve the types named after them
(``"images.resize"`` → method ``images_resize``; without ``types``, every
public method). ``typed = true`` hands handlers decoded MessagePack. The CLI's
``echo = true`` and ``exec = "command"`` workers work too.

``--only NAME`` runs one role of the file: ``broker`` (every broker),
``broker#0`` (the first, numbered as ``lhcluster up`` prints them), or the
``name`` a table gives.

``python -m lhcluster worker --broker EP --type NAME --handler mod:fn`` runs
one worker, Celery-style.
"""

import argparse
import importlib
import inspect
import os
import signal
import subprocess
import sys
import threading
from typing import Any, Callable, Optional

from . import Broker, ClientProxy, NotifyBroker, Worker, request_type_id

KINDS = ("broker", "proxy", "notify_broker", "worker")


def _load_toml(path: str) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ImportError:  # pragma: no cover - older Pythons
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as f:
        return tomllib.load(f)


def load_handler(spec: str) -> Any:
    """The object named by ``module:attribute`` (``mypkg.handlers:resize``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"a handler is named as module:attribute, not {spec!r}")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _method_name(type_name: str) -> str:
    return type_name.replace(".", "_").replace("-", "_")


def handlers_of(target: Any, types: Optional[list]) -> list:
    """``(type, function)`` pairs: a function serves every type; a class (or
    instance) serves each type with the method named after it."""
    if inspect.isclass(target):
        target = target()
    if inspect.isfunction(target) or inspect.isbuiltin(target) or (callable(target) and not _has_methods(target)):
        if not types:
            raise ValueError("a handler function needs `types` (the request types it serves)")
        return [(t, target) for t in types]
    if not types:
        types = [name for name, member in inspect.getmembers(target, callable) if not name.startswith("_")]
        if not types:
            raise ValueError(f"{target!r} has no public methods to serve")
    pairs = []
    for t in types:
        name = _method_name(str(t))
        method = getattr(target, name, None)
        if method is None:
            raise ValueError(f"{type(target).__name__} has no method {name!r} for request type {t!r}")
        pairs.append((t, method))
    return pairs


def _has_methods(obj: Any) -> bool:
    return any(not n.startswith("_") and callable(m) for n, m in inspect.getmembers(type(obj)) if not isinstance(m, type))


def _echo(payload: Any, ctx: Any) -> Any:
    return payload


def _exec_handler(command: str) -> Callable[[Any, Any], bytes]:
    def run(payload: bytes, ctx: Any) -> bytes:
        done = subprocess.run(["sh", "-c", command], input=payload, capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"exit status {done.returncode}: {done.stderr.decode(errors='replace').strip()}")
        return done.stdout

    return run


def start_worker(table: dict) -> Worker:
    """A started worker from a ``[[worker]]`` table."""
    table = dict(table)
    types = table.pop("types", None)
    handler = table.pop("handler", None)
    echo = table.pop("echo", False)
    command = table.pop("exec", None)
    typed = bool(table.pop("typed", False))
    chosen = [x for x in (handler, command, echo or None) if x]
    if len(chosen) != 1:
        raise ValueError("a worker table needs exactly one of `handler`, `exec` or `echo = true`")
    broker = table.pop("brokers", None) or table.pop("broker", None)
    if broker is None:
        raise ValueError("a worker table needs `brokers`")
    worker = Worker(broker, **table)
    if handler:
        pairs = handlers_of(load_handler(handler), types)
    else:
        if not types:
            raise ValueError("a worker table needs `types`")
        fn = _echo if echo else _exec_handler(command)
        pairs = [(t, fn) for t in types]
    for t, fn in pairs:
        worker.handle(t, fn, typed=typed)
    return worker.start()


STARTERS = {
    "broker": lambda t: Broker(t.pop("frontend", ""), t.pop("backend", ""), **t),
    "proxy": lambda t: ClientProxy(t.pop("bind", ""), t.pop("brokers", None) or t.pop("broker", ""), **t),
    "notify_broker": lambda t: NotifyBroker(t.pop("frontend", ""), t.pop("backend", ""), **t),
    "worker": start_worker,
}


def selected(kind: str, index: int, table: dict, only: Optional[str]) -> bool:
    if only is None:
        return True
    return only in (kind, f"{kind}#{index}") or (table.get("name") is not None and table.get("name") == only)


def up(path: str, only: Optional[str] = None, stop: Optional[threading.Event] = None) -> int:
    """Starts the roles of a cluster file; runs until ``stop`` (or a signal)."""
    cluster = _load_toml(path)
    unknown = set(cluster) - set(KINDS) - {"metrics"}
    if unknown:
        raise ValueError(f"{path}: unknown table(s) {sorted(unknown)} (expected {', '.join(KINDS)})")
    if "metrics" in cluster:
        print("metrics: not served by the Python runner (use the lhcluster binary)", file=sys.stderr)
    started: list = []
    try:
        for kind in KINDS:
            for i, table in enumerate(cluster.get(kind, [])):
                if not selected(kind, i, table, only):
                    continue
                try:
                    role = STARTERS[kind](dict(table))
                except Exception as e:
                    raise SystemExit(f"{kind} #{i}: {e}") from e
                started.append(role)
                print(f"{kind} #{i} started", flush=True)
        if not started:
            raise SystemExit(f"{path}: no role to run" + (f" named {only!r}" if only else ""))
        print("cluster up", flush=True)
        _wait(stop)
    finally:
        for role in reversed(started):
            try:
                role.stop()
            except Exception as e:  # keep stopping the others
                print(f"stopping: {e}", file=sys.stderr)
    return 0


def _wait(stop: Optional[threading.Event]) -> None:
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.2):
        pass


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lhcluster", description="Run lhcluster roles from Python.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="run the roles of a cluster file (the lhcluster up format)")
    p_up.add_argument("file")
    p_up.add_argument("--only", help="run one role: KIND, KIND#INDEX or a table's name")
    p_w = sub.add_parser("worker", help="run one worker with a Python handler")
    p_w.add_argument("--broker", action="append", required=True, help="a broker's backend (repeat for failover)")
    p_w.add_argument("--type", action="append", dest="types", help="a request type (name or number); repeatable")
    p_w.add_argument("--handler", required=True, help="module:function or module:Class")
    p_w.add_argument("--typed", action="store_true", help="payloads are MessagePack values")
    p_w.add_argument("--capacity", type=int, default=1)
    p_w.add_argument("--name")
    p_t = sub.add_parser("type-id", help="print the request type id of a name")
    p_t.add_argument("name")
    args = parser.parse_args(argv)
    sys.path.insert(0, os.getcwd())  # handlers in the current directory
    if args.command == "up":
        return up(args.file, args.only)
    if args.command == "type-id":
        print(request_type_id(args.name))
        return 0
    types = [int(t) if t.isdigit() else t for t in (args.types or [])]
    table = {"brokers": args.broker, "handler": args.handler, "typed": args.typed, "capacity": args.capacity}
    if types:
        table["types"] = types
    if args.name:
        table["name"] = args.name
    worker = start_worker(table)
    print("worker started", flush=True)
    try:
        _wait(None)
    finally:
        worker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
