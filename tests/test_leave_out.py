"""A deployment may leave a package out (doorstep/jobs.py ``optional_attribute``): the other
packages' commands still load. Checked in a fresh interpreter where the left-out package cannot
be imported, as if it were not installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LEAVE_OUT = """
import importlib.abc, sys

class LeftOut(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname == {package!r} or fullname.startswith({package!r} + "."):
            raise ModuleNotFoundError(f"No module named {{fullname!r}}", name=fullname)

sys.meta_path.insert(0, LeftOut())
{code}
"""


def run_without(package: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", LEAVE_OUT.format(package=package, code=code)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_courier_page_is_served_without_the_listeners() -> None:
    """``doorstep courier-page`` is the responders' own process: it needs the inbound HTTP
    application, not the listeners that also use it."""
    done = run_without("listeners", "from responders.courier_page import CourierPageServer\nprint('loaded')")
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    assert done.stdout.strip() == "loaded"
