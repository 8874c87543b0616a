"""The API and CLI reference pages cover vaelib's public surface.

Every public name (everything in ``vaelib.__all__`` and in the ``__all__`` of
each namespace it lists) has exactly one entry on ``book/api.md``, under the
target the chapters link to: ``vaelib.<name>`` for a top-level name and
``vaelib.<namespace>.<name>`` for a namespace's.  So a new public name without
an entry fails here, and so does an entry for a name that no longer exists.
The strict book build (``jupyter-book build . -W -n``) then checks that each
entry renders and that every cross-reference resolves.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections import Counter
from pathlib import Path

import pytest

import vaelib
import vaelib.train
from vaelib.cli import field_help

REPO = Path(__file__).resolve().parents[1]
API = (REPO / "book" / "api.md").read_text(encoding="utf8")
CLI = (REPO / "book" / "cli.md").read_text(encoding="utf8")
# ".. autofunction:: vaelib.fit", ".. py:data:: vaelib.__version__", ".. automodule:: vaelib.pca", ...
DIRECTIVE = re.compile(r"^\s*\.\. (auto\w+|py:\w+):: +(vaelib(?:\.\w+)*)\s*$", re.M)


def public_names() -> list[str]:
    names = []
    for name in vaelib.__all__:
        obj = getattr(vaelib, name)
        names.append(f"vaelib.{name}")
        if inspect.ismodule(obj):
            names += [f"vaelib.{name}.{member}" for member in obj.__all__]
    return names


PUBLIC = public_names()
ENTRIES = Counter(target for _, target in DIRECTIVE.findall(API))


def _resolve(target: str):
    parts = target.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(target)


def test_the_public_surface_is_what_the_package_says():
    assert len(PUBLIC) == len(set(PUBLIC))
    assert "vaelib.fit" in PUBLIC and "vaelib.gaussian.gaussian_kl" in PUBLIC and "vaelib.plot.STYLE" in PUBLIC
    namespaces = [n for n in vaelib.__all__ if inspect.ismodule(getattr(vaelib, n))]
    assert set(namespaces) == {
        "gaussian",
        "information",
        "pca",
        "autoencoder",
        "elbo",
        "estimators",
        "linear_gaussian",
        "burda",
        "plot",
    }


@pytest.mark.parametrize("name", PUBLIC)
def test_every_public_name_has_exactly_one_entry(name):
    assert ENTRIES[name] == 1, (
        f"{name} has {ENTRIES[name]} entries in book/api.md; add exactly one "
        f"(e.g. '.. autofunction:: {name}' in an {{eval-rst}} block of the right section)"
    )


def test_every_entry_names_an_existing_object():
    for target in ENTRIES:
        try:
            _resolve(target)
        except (ImportError, AttributeError):
            pytest.fail(f"book/api.md documents {target}, which does not exist")
    extra = set(ENTRIES) - set(PUBLIC)
    assert extra <= {"vaelib.train.learning_rate"}, f"entries for names that are not public: {sorted(extra)}"


def test_the_page_has_the_sections_the_brief_asks_for_in_order():
    headings = re.findall(r"^## (.+)$", API, re.M)
    top = ["Models", "The objective", "Training", "Data", "Using a model"]
    assert headings[: len(top)] == top
    assert any(h.startswith("Pretrained models") for h in headings) and "Errors" in headings
    for namespace in ("gaussian", "information", "pca", "autoencoder", "elbo", "estimators", "linear_gaussian", "plot"):
        assert any(h.startswith(f"`vl.{namespace}`") for h in headings), namespace


def test_no_autosummary_stub_files():
    """Autosummary would write generated stubs into the source tree; the page uses autodoc directly."""
    assert "autosummary" not in API
    assert not list((REPO / "book").glob("**/generated")), "stray autosummary output in book/"


def test_classes_document_their_members_and_config_fields_their_comments():
    for match in re.finditer(r"\.\. autoclass:: (vaelib\.[\w.]+)\n((?:   .*\n)*)", API):
        target, options = match.groups()
        if target != "vaelib.plot.Figure":  # a matplotlib Figure: its members are matplotlib's
            assert ":members:" in options, target
    for cls in (vaelib.VAEConfig, vaelib.TrainConfig, vaelib.AutoencoderConfig):
        missing = {f.name for f in dataclasses.fields(cls)} - set(field_help(cls))
        assert not missing, f"{cls.__name__} fields without a '#:' comment (autodoc shows it): {missing}"


MATH_DOCSTRINGS = [
    vaelib.objective,
    vaelib.iwae_bound,
    vaelib.log_marginal_likelihood,
    vaelib.train.learning_rate,
    vaelib.gaussian.log_normal,
    vaelib.gaussian.reparameterize,
    vaelib.gaussian.gaussian_kl,
    vaelib.gaussian.kl_standard_normal,
    vaelib.estimators,
    vaelib.estimators.score_function_gradient,
    vaelib.estimators.reparameterized_gradient,
    vaelib.estimators.gaussian_score,
    vaelib.estimators.gaussian_expectation,
    vaelib.estimators.gaussian_expectation_gradient,
]


@pytest.mark.parametrize("obj", MATH_DOCSTRINGS, ids=lambda o: o.__name__)
def test_equations_in_docstrings_are_marked_up_as_math(obj):
    """The equations render on the API page: a ``.. math::`` block (and the text stays readable in help())."""
    doc = inspect.getdoc(obj)
    assert ".. math::" in doc, f"{obj.__name__}: state the equation in a '.. math::' block"
    assert not re.search(r"[\a\b\f\v]", doc), 'a backslash escape was read as a control character: use r"""..."""'


def test_cli_page_is_generated_from_the_real_parser():
    assert re.search(r"\.\. argparse::\n   :module: vaelib\.cli\n   :func: build_parser\n   :prog: vaelib\n", CLI), (
        "book/cli.md renders vaelib.cli.build_parser with sphinx-argparse"
    )
