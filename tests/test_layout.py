"""The layering the README promises, checked on the source: the core never reaches up.

Dependencies flow one way: listeners, classifiers and responders use the core (doorstep/);
the console uses them and the core; the entry points that compose them all (commands/) sit
above everything. An import inside a function counts too: a lazy import is still a dependency.
So does a module named in a string: ``importlib.import_module("console.widgets")``,
``import_module(...)``, ``__import__(...)`` with a literal name, or a ``"package.module:attribute"``
provider string (what :func:`doorstep.jobs.optional_attribute` loads). The core composes no
package by string: the plug-in lists (``COMMAND_PROVIDERS``, ``CONFIG_CHECKS``, the worker's job
providers) live in commands/, which may name every package, and hand their strings to
``optional_attribute``; so no string in doorstep/ may name another package, with no exceptions.

listeners/, classifiers/ and responders/ are siblings and may each be left out of a deployment, so
they do not import each other, with one documented exception (README, "Architecture"):
:data:`SIBLING_IMPORTS`.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("listeners", "classifiers", "responders", "console")
#: The packages that use only the core (and, by exception, each other): the console sits above them.
SIBLINGS = ("listeners", "classifiers", "responders")
#: The one sibling edge there is, on purpose: the SMS and e-mail reply endpoints are the inbound
#: half of the responders' dialogue (what a customer's answer to our question triggers is
#: responders/dialogue.py; its settings are [responders.dialogue]). Its imports are inside the
#: endpoint's methods; a deployment without responders asks no questions, so gets no replies.
SIBLING_IMPORTS = {"listeners/replies.py": {"responders"}}
#: ``"package.module:attribute"``: a provider string, as optional_attribute takes it.
PROVIDER_STRING = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*:[A-Za-z_]\w*")
STRING_IMPORTERS = {"import_module", "__import__"}


def _string_import(node: ast.AST) -> str | None:
    """The module a call such as ``importlib.import_module("x.y")`` or ``__import__("x")`` names, if literal."""
    if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)):
        return None
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return node.args[0].value if name in STRING_IMPORTERS else None


def imported_modules(package: str) -> dict[str, set[str]]:
    """Top-level names each module of ``package`` imports, at any depth: module imports, from-imports,
    literal ``import_module``/``__import__`` calls and ``"module:attribute"`` provider strings."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif (module := _string_import(node)) is not None:
                names.add(module.split(".")[0])
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and PROVIDER_STRING.fullmatch(node.value.strip())):
                names.add(node.value.strip().split(":")[0].split(".")[0])
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


def test_listeners_classifiers_and_responders_do_not_import_the_console():
    offenders = {module: ["console"] for package in SIBLINGS
                 for module, names in imported_modules(package).items() if "console" in names}
    assert offenders == {}


def test_the_sibling_packages_import_each_other_only_where_documented():
    edges = {module: names & (set(SIBLINGS) - {package}) for package in SIBLINGS
             for module, names in imported_modules(package).items()}
    assert {module: others for module, others in edges.items() if others} == SIBLING_IMPORTS


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
