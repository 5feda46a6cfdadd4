#!/usr/bin/env python
"""Pins the Flex Template's packages to the versions installed where the tests ran.

Run it with the Python of the test environment (``pip install -e '.[test]'``, Python
3.11 on Linux like the launcher image) after changing setup.py's requirements or
upgrading packages, and commit the two files it writes:

    python templates/pin_versions.py           # rewrite them
    python templates/pin_versions.py --check   # exit 1 when they differ from what is installed

- ``templates/constraints.txt``: every package ``pip install '.[gcp,report]'`` installs
  (this package's requirements, theirs, and so on, as they apply to this Python on
  Linux) at its installed version. templates/Dockerfile installs the package with it.
- ``templates/requirements-launcher.txt``: this package's direct requirements with the
  gcp extra (apache-beam[gcp], numpy, pyarrow) at their installed versions, for the
  Docker-less ``gcloud dataflow flex-template build`` (FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE).
  The launcher also stages that file for the workers at every launch, so it stays short.

tests/test_template.py checks that both files equal what this script writes.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata
import os
import platform
import sys
from typing import Dict, Iterable, List, Set, Tuple

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

TEMPLATES = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TEMPLATES)
CONSTRAINTS = os.path.join(TEMPLATES, "constraints.txt")
LAUNCHER_REQUIREMENTS = os.path.join(TEMPLATES, "requirements-launcher.txt")
# The image's extras, and the launcher image's Python (gcr.io/dataflow-templates-base/python311-...).
IMAGE_EXTRAS = ("gcp", "report")
LAUNCHER_EXTRAS = ("gcp",)
IMAGE_PYTHON = (3, 11)


def setup_requirements() -> Tuple[List[str], Dict[str, List[str]]]:
    """install_requires and extras_require as setup.py states them (read, not run)."""
    with open(os.path.join(REPO_ROOT, "setup.py"), encoding="utf-8") as handle:
        tree = ast.parse(handle.read())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    return keywords["install_requires"], keywords["extras_require"]


def direct_requirements(extras: Iterable[str]) -> List[Requirement]:
    install_requires, extras_require = setup_requirements()
    lines = list(install_requires) + [line for extra in extras for line in extras_require[extra]]
    return [Requirement(line) for line in lines]


def _applies(requirement: Requirement, extras: Set[str]) -> bool:
    """Whether a requirement applies here (this Python, this platform) with these extras."""
    if requirement.marker is None:
        return True
    return any(requirement.marker.evaluate({"extra": extra}) for extra in (extras or {""}))


def installed_closure(roots: Iterable[Requirement]) -> Dict[str, str]:
    """Canonical name -> installed version of every package the roots need, recursively.

    Raises ``importlib.metadata.PackageNotFoundError`` when one is not installed.
    """
    versions: Dict[str, str] = {}
    extras_seen: Dict[str, Set[str]] = {}
    pending = [r for r in roots if _applies(r, set())]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        extras = set(requirement.extras)
        if name in extras_seen and extras <= extras_seen[name]:
            continue
        extras_seen[name] = extras_seen.get(name, set()) | extras
        distribution = importlib.metadata.distribution(requirement.name)
        versions[name] = distribution.version
        for line in distribution.requires or []:
            dependency = Requirement(line)
            if _applies(dependency, extras_seen[name]):
                pending.append(dependency)
    return versions


def _header(purpose: str) -> str:
    python = ".".join(map(str, sys.version_info[:2]))
    return (
        f"# {purpose}\n"
        f"# Written by templates/pin_versions.py from the packages installed where the tests ran\n"
        f"# (Python {python}, {platform.system()}); rerun it after changing setup.py or upgrading.\n"
    )


def constraints_text() -> str:
    versions = installed_closure(direct_requirements(IMAGE_EXTRAS))
    pins = "".join(f"{name}=={version}\n" for name, version in sorted(versions.items()))
    return _header("Every package of pip install '.[gcp,report]', pinned (templates/Dockerfile).") + pins


def launcher_requirements_text() -> str:
    extras: Dict[str, Set[str]] = {}
    for requirement in direct_requirements(LAUNCHER_EXTRAS):  # apache-beam comes twice: merge
        extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    lines = []
    for name, name_extras in sorted(extras.items()):
        listed = f"[{','.join(sorted(name_extras))}]" if name_extras else ""
        lines.append(f"{name}{listed}=={importlib.metadata.version(name)}\n")
    purpose = "The launcher's packages for the Docker-less gcloud build (templates/README.md)."
    return _header(purpose) + "".join(lines)


def expected_files() -> Dict[str, str]:
    return {CONSTRAINTS: constraints_text(), LAUNCHER_REQUIREMENTS: launcher_requirements_text()}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 when a file differs; write nothing.")
    args = parser.parse_args(argv)
    if sys.version_info[:2] != IMAGE_PYTHON or platform.system() != "Linux":
        print(f"warning: the launcher image runs Python {'.'.join(map(str, IMAGE_PYTHON))} on Linux; "
              "pins written elsewhere may not apply to it", file=sys.stderr)
    stale = []
    for path, text in expected_files().items():
        with open(path, encoding="utf-8") if os.path.exists(path) else open(os.devnull) as handle:
            current = handle.read()
        if current == text:
            continue
        stale.append(os.path.relpath(path, REPO_ROOT))
        if not args.check:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text)
    if args.check and stale:
        print(f"out of date: {', '.join(stale)} (run python templates/pin_versions.py)", file=sys.stderr)
        return 1
    for path in stale:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
