"""`python -m lhcluster up` (the cluster file, Python handlers, --only) and
`python -m lhcluster worker`, run as child processes."""

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

import lhcluster

HERE = os.path.dirname(os.path.abspath(__file__))


def spawn(*args, until):
    """Starts `python -m lhcluster ARGS` in this directory and waits for the
    line `until` on its output (returning the lines seen)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lhcluster", *args],
        cwd=HERE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line.strip()) for line in proc.stdout], daemon=True).start()
    seen, deadline = [], time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.2)
        except queue.Empty:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if line == until:
            return proc, seen
    proc.kill()
    raise AssertionError(f"no {until!r} from {args}: {seen}")


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0


@pytest.fixture
def cluster_file(tmp_path):
    front, back = f"ipc://{tmp_path}/front", f"ipc://{tmp_path}/back"
    path = tmp_path / "cluster.toml"
    path.write_text(
        f"""
[[broker]]
frontend = "{front}"
backend = "{back}"
heartbeat = "500ms"

[[worker]]
name = "shouter"
brokers = ["{back}"]
types = ["shout"]
handler = "cli_handlers:shout"

[[worker]]
brokers = ["{back}"]
types = ["images.resize", "images.rotate"]
handler = "cli_handlers:Images"
typed = true
capacity = 2

[[worker]]
brokers = ["{back}"]
types = ["echo"]
echo = true
"""
    )
    return path, front, back


def test_up_runs_the_whole_file(cluster_file):
    path, front, _ = cluster_file
    proc, lines = spawn("up", str(path), until="cluster up")
    try:
        assert "broker #0 started" in lines and "worker #2 started" in lines
        with lhcluster.Client(front) as c:
            assert c.request("shout", b"hey", timeout=10) == b"HEY!"
            assert c.request("images.resize", {"width": 640}, timeout=10) == {"width": 320, "served": 1}
            assert c.request("images.rotate", {"angle": 270}, timeout=10) == {"angle": 0}
            assert c.request("echo", b"same", timeout=10) == b"same"
    finally:
        stop(proc)


def test_only_runs_one_role_per_process(cluster_file):
    path, front, _ = cluster_file
    broker, lines = spawn("up", str(path), "--only", "broker", until="cluster up")
    try:
        assert lines == ["broker #0 started", "cluster up"]
        worker, lines = spawn("up", str(path), "--only", "shouter", until="cluster up")
        try:
            assert lines == ["worker #0 started", "cluster up"]
            with lhcluster.Client(front) as c:
                assert c.request("shout", b"split", timeout=10) == b"SPLIT!"
                # The other workers of the file are not running.
                with pytest.raises(lhcluster.NoWorkers):
                    c.request("echo", b"", flags=lhcluster.Flags.FAIL_FAST, timeout=10)
        finally:
            stop(worker)
    finally:
        stop(broker)


def test_only_an_unknown_name_fails(cluster_file):
    path, _, _ = cluster_file
    done = subprocess.run(
        [sys.executable, "-m", "lhcluster", "up", str(path), "--only", "nobody"],
        cwd=HERE, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode != 0
    assert "no role to run named 'nobody'" in done.stderr


def test_worker_command(tmp_path):
    front, back = f"ipc://{tmp_path}/wf", f"ipc://{tmp_path}/wb"
    with lhcluster.Broker(front, back):
        proc, _ = spawn("worker", "--broker", back, "--type", "shout", "--handler", "cli_handlers:shout",
                        until="worker started")
        try:
            with lhcluster.Client(front) as c:
                assert c.request("shout", b"celery style", timeout=10) == b"CELERY STYLE!"
        finally:
            stop(proc)


def test_type_id_command():
    done = subprocess.run([sys.executable, "-m", "lhcluster", "type-id", "orders.create"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == str(0x1D4FB242)
