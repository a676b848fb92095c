"""The layering the README promises, checked on the source: the core never reaches up.

Dependencies flow one way: listeners, classifiers, responders and console use the core
(doorstep/); the entry points that compose them (commands/) sit above all of them. An import
inside a function counts too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("listeners", "classifiers", "responders", "console")


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level names each module of ``package`` imports (module imports and from-imports, at any depth)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def test_the_core_imports_no_package_above_it_and_not_streamlit():
    above = set(PACKAGES) | {"commands", "standins", "streamlit"}
    offenders = {module: sorted(names & above) for module, names in imported_modules("doorstep").items() if names & above}
    assert offenders == {}


def test_no_package_imports_the_entry_points_that_compose_it():
    offenders = {module: ["commands"] for package in PACKAGES + ("standins",)
                 for module, names in imported_modules(package).items() if "commands" in names}
    assert offenders == {}


def test_the_stand_ins_for_outside_services_live_together():
    assert {p.stem for p in (ROOT / "standins").glob("*.py")} >= {"x_emulator", "mastodon", "bluesky", "twilio", "smtp",
                                                                   "recording", "sinks"}
    assert not list((ROOT / "listeners").glob("*emulator*.py"))
    # No test file defines a stand-in of its own any more.
    for path in (ROOT / "tests").glob("test_*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = {n.name for n in tree.body if isinstance(n, ast.ClassDef)}
        assert not {n for n in names if n.endswith("StandIn") or n in ("SmtpSink", "RecordingServer")}, path.name


def test_the_core_and_the_listeners_name_the_same_channel_sections() -> None:
    """The core cannot import the listeners, so the section names live in doorstep.config and the
    models in listeners.config: one list each, kept equal here."""
    from doorstep.config import LISTENER_CHANNELS
    from listeners.config import SECTIONS

    assert tuple(SECTIONS) == LISTENER_CHANNELS
