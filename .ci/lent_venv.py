"""Make a fresh venv that already has torch, torchvision and numpy, lent by the project venv.

Usage: python .ci/lent_venv.py DIR   (with the project venv's python; prints the new venv's python)

Colab and most readers' machines already have torch. A second install from PyPI
(the CUDA build and its nvidia wheels) would take about 6 GB of disk, more than
CI's machine can spare. Instead the distributions that torch, torchvision and
numpy need (their dependency closure, at the pins of .ci/constraints.txt) are
linked into DIR/lent, one symlink per top-level entry. A .pth file in the new
venv DIR/venv puts that directory on sys.path after the venv's own
site-packages. Like Colab's system packages, pip can shadow them there but
never change them. .ci/package_check and .ci/colab_check both use it.
"""

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

CONSTRAINTS = Path(__file__).with_name("constraints.txt")


def lend(out: Path) -> int:
    """Link the closure of the pinned packages and numpy into ``out``; return how many."""
    lines = CONSTRAINTS.read_text(encoding="utf8").splitlines()
    pins = [Requirement(line) for line in lines if line.strip()[:1].isalpha()]
    for pin in pins:
        have = metadata.version(pin.name).split("+")[0]
        if have not in pin.specifier:
            sys.exit(f"lent venv: the project venv has {pin.name} {have}, not {pin.specifier}; rerun .ci/setup")
    todo, seen = [pin.name for pin in pins] + ["numpy"], set()
    while todo:  # the dependency closure, markers evaluated, extras skipped
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    out.mkdir(parents=True)
    for name in sorted(seen):
        dist = metadata.distribution(name)
        site = Path(dist.locate_file("")).resolve()
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        if not any(top.endswith(".dist-info") for top in tops):  # pip must see it as installed
            sys.exit(f"lent venv: {name} lists no .dist-info directory in its RECORD")
        for top in sorted(tops):
            if (site / top).exists() and not (out / top).exists() and not top.endswith(".pth"):
                (out / top).symlink_to(site / top)
    return len(seen)


def main(root: Path) -> None:
    count = lend(root / "lent")
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "lent-by-project-venv.pth").write_text(f"{root / 'lent'}\n", encoding="utf8")
    print(f"   a fresh venv lent {count} distributions by {sysconfig.get_paths()['purelib']}", file=sys.stderr)
    print(python)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.split("\n\n")[1])
    main(Path(sys.argv[1]).resolve())
