"""The examples docs/python.md shows run and end on their own."""

import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples")


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py")))
def test_example_runs(name):
    done = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


def test_bench_runs(capsys):
    from lhcluster import bench

    assert bench.main(["-n", "300", "-w", "8", "--asyncio"]) == 0
    out = capsys.readouterr().out
    assert "lhcluster Client.send (handles)" in out and "req/s" in out
