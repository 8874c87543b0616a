"""What a release needs: one version everywhere, a changelog entry, and
dependencies that leave Colab's torch and numpy alone.

``vaelib.__version__`` is the single source (pyproject reads it); the newest
entry of ``CHANGELOG.md`` is that version (the chapters' Colab pins are
checked in ``tests/test_book.py``); the runtime dependencies are lower bounds
only, so installing the wheel on Colab never replaces the torch, torchvision
or numpy already there (``.ci/colab_check`` checks that with pip itself).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import vaelib

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[1]
CHANGELOG = (REPO / "CHANGELOG.md").read_text(encoding="utf8")
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf8"))
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.M)


def test_the_newest_changelog_entry_is_the_package_version():
    releases = RELEASE.findall(CHANGELOG)
    assert releases, "CHANGELOG.md has no '## [X.Y.Z] - YYYY-MM-DD' entries"
    assert releases[0][0] == vaelib.__version__, (
        f"CHANGELOG.md's newest release is {releases[0][0]} but vaelib.__version__ is {vaelib.__version__}: "
        "add the entry (or bump the version) so the two agree"
    )


def test_changelog_follows_keep_a_changelog():
    assert CHANGELOG.startswith("# Changelog\n")
    assert "keepachangelog.com" in CHANGELOG
    headings = re.findall(r"^## \[([^\]]+)\]", CHANGELOG, re.M)
    assert headings[0] == "Unreleased", "an [Unreleased] section on top collects the next release's changes"
    releases = RELEASE.findall(CHANGELOG)
    assert headings[1:] == [v for v, _ in releases], "every release heading is '## [X.Y.Z] - YYYY-MM-DD'"
    versions = [Version(v) for v, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions), "newest first"
    dates = [date.fromisoformat(d) for _, d in releases]
    assert dates == sorted(dates, reverse=True)
    assert "0.1.0" in [v for v, _ in releases]
    for section in re.split(r"^## ", CHANGELOG, flags=re.M)[2:]:  # each release
        kinds = re.findall(r"^### (\w+)$", section, re.M)
        assert kinds and set(kinds) <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}, kinds
    for heading in headings:  # link references at the bottom
        assert re.search(rf"^\[{re.escape(heading)}\]: https://", CHANGELOG, re.M), f"no link for [{heading}]"


def test_version_has_a_single_source():
    assert PYPROJECT["project"]["dynamic"] == ["version"]
    assert "version" not in PYPROJECT["project"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "vaelib._version.__version__"}
    assert vaelib.__version__ is vaelib._version.__version__  # the package re-exports the one literal
    Version(vaelib.__version__)  # a valid version


def test_runtime_dependencies_are_lower_bounds_only():
    """Colab already has torch, torchvision and numpy: pip must never need to replace them."""
    deps = [Requirement(d) for d in PYPROJECT["project"]["dependencies"]]
    assert {d.name for d in deps} >= {"torch", "torchvision", "numpy"}
    for dep in deps:
        operators = {spec.operator for spec in dep.specifier}
        assert operators == {">="}, f"{dep}: a runtime dependency takes a lower bound (>=) and nothing else"
        assert not dep.marker and not dep.url, dep
