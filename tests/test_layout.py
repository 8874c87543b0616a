"""Where names live and how large the orchestration may grow: the package's layout, pinned.

Each name has one home beside what it belongs to (``build_model`` with the
models, the Bernoulli log-likelihood in a leaf module beside ``gaussian``,
the published Burda numbers in ``vl.burda``, not in the weight loader); no
module imports back up from the package's ``__init__``; ``fit`` stays
orchestration a reader follows after ``train_epoch``, and the browser check
of the built book stays a short pytest module.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import vaelib as vl

PACKAGE = Path(vl.__file__).resolve().parent
REPO = PACKAGE.parent
MODULES = sorted(p for p in PACKAGE.glob("*.py") if p.name != "__init__.py")


def _imports(path: Path) -> list[ast.AST]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_module_imports_back_up_from_the_package_init(path):
    """``from . import x`` may name sibling modules only, and nothing imports ``vaelib`` itself."""
    for node in _imports(path):
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module is None:
            for alias in node.names:
                assert (PACKAGE / f"{alias.name}.py").exists(), f"from . import {alias.name}: not a module"
        elif isinstance(node, ast.ImportFrom):
            assert node.module != "vaelib", f"{path.name}: from vaelib import ...; import the home module"
        else:
            assert not any(a.name.split(".")[0] == "vaelib" for a in node.names), f"{path.name}: import vaelib"


def test_names_live_beside_what_they_belong_to():
    assert vl.build_model.__module__ == "vaelib.models"
    assert vl.elbo.bernoulli_log_likelihood.__module__ == "vaelib.bernoulli"
    assert vl.burda.PUBLISHED_NLL  # the published numbers have their home in vl.burda ...
    loader = (PACKAGE / "pretrained.py").read_text()
    assert not any(f"{nll}" in loader for nll in vl.burda.PUBLISHED_NLL.values())  # ... not in the loader


@pytest.mark.parametrize("leaf", ["bernoulli", "gaussian"])
def test_the_likelihood_modules_are_leaves(leaf):
    """The models and the objective both take the log-densities from these; they import nothing of vaelib's
    but its errors and input checks (which import nothing but the errors)."""
    for path in (PACKAGE / f"{leaf}.py", PACKAGE / "_checks.py"):
        for node in _imports(path):
            if isinstance(node, ast.ImportFrom) and node.level:
                imported = [node.module] if node.module else [a.name for a in node.names]
                assert set(imported) <= {"errors", "_checks"}, f"{path.name} imports {imported}"


def test_fit_stays_orchestration_of_about_fifty_lines():
    lines, _ = inspect.getsourcelines(vl.fit)
    assert len(lines) <= 55, f"fit has grown to {len(lines)} lines; move a concern into a helper of its own"


def test_the_browser_check_of_the_book_stays_short():
    lines = (REPO / ".ci" / "test_built_book.py").read_text().splitlines()
    assert len(lines) <= 300, f".ci/test_built_book.py has {len(lines)} lines; hand checks to libraries"
