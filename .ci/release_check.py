#!/usr/bin/env python3
"""Refuse a release whose tag is not the package's version.

    python .ci/release_check.py v0.2.0               # the tag against the sources
    python .ci/release_check.py v0.2.0 --dist dist   # ... and against the built sdist and wheel

The tag, without its leading ``v``, must equal ``vaelib.__version__`` (read
from ``vaelib/_version.py`` without importing the package, so no torch is
needed), ``CHANGELOG.md`` must have an entry for that version as its newest
release, and with ``--dist`` every distribution in that directory must carry
the version.  Exit status 0 when all agree, 1 with a message that says what
to change otherwise.  ``.github/workflows/release.yml`` runs it before it
publishes.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def package_version(init: Path = REPO / "vaelib" / "_version.py") -> str:
    """``__version__`` as assigned in ``vaelib/_version.py``."""
    for node in ast.parse(init.read_text(encoding="utf8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__version__" for t in node.targets):
            return ast.literal_eval(node.value)
    raise SystemExit(f"no __version__ = '...' assignment in {init}")


def changelog_versions(path: Path = REPO / "CHANGELOG.md") -> list[str]:
    """The released versions in ``CHANGELOG.md``, newest first (``## [X.Y.Z] - date`` headings)."""
    return re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", path.read_text(encoding="utf8"), re.M)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tag", help="the git tag being released, e.g. v0.2.0 (GITHUB_REF_NAME)")
    parser.add_argument("--dist", type=Path, help="directory of built distributions to check as well")
    args = parser.parse_args(argv)

    problems = []
    if not args.tag.startswith("v"):
        problems.append(f"the tag {args.tag!r} does not start with 'v' (release tags are vX.Y.Z)")
    tag_version = args.tag.removeprefix("v")
    version = package_version()
    if tag_version != version:
        problems.append(
            f"the tag {args.tag!r} says version {tag_version} but vaelib.__version__ is {version!r}: "
            f"bump __version__ in vaelib/_version.py (and the chapters' Colab pins, and CHANGELOG.md) "
            f"and tag that commit, or tag v{version}"
        )
    released = changelog_versions()
    if not released or released[0] != version:
        problems.append(
            f"CHANGELOG.md's newest release is {released[0] if released else 'missing'}, not {version}: "
            f"add a '## [{version}] - YYYY-MM-DD' entry"
        )
    if args.dist is not None:
        files = sorted(p for p in args.dist.glob("vaelib-*") if p.suffix in (".whl", ".gz"))
        if not any(p.suffix == ".whl" for p in files) or not any(p.name.endswith(".tar.gz") for p in files):
            problems.append(f"{args.dist} does not hold both a wheel and an sdist: {[p.name for p in files]}")
        for path in files:
            built = re.match(r"vaelib-([^-]+?)(?:\.tar\.gz|-py)", path.name)
            if not built or built.group(1) != tag_version:
                problems.append(f"{path.name} is not version {tag_version}")
    for problem in problems:
        print(f"::error::release refused: {problem}")
    if problems:
        return 1
    print(f"release {args.tag}: vaelib.__version__, CHANGELOG.md{' and the distributions' if args.dist else ''} agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
