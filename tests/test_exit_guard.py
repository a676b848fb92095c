"""The test run cannot end silently: ``os._exit`` inside the pytest process fails the test that reached it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def test_os_exit_inside_the_test_run_fails_the_test_instead_of_ending_the_run() -> None:
    with pytest.raises(RuntimeError, match="os._exit"):
        os._exit(0)


def test_a_child_process_still_exits() -> None:
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os._exit(7)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 7
    # and a separate interpreter is untouched
    assert subprocess.run([sys.executable, "-c", "import os; os._exit(5)"]).returncode == 5
