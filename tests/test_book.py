"""House rules for the chapters, checked on the stored notebooks (no kernel needed).

Every page in the table of contents exists.  Every chapter opens with its
title, a Colab-only install cell pinned to this vaelib version and a hidden
cell that repeats the book's MathJax macros for Jupyter; it says what the
reader will learn and how long it runs (a measured, glued number), numbers
and captions its figures with alt text, keeps code lines within 88
characters and cells short, ends with key takeaways, exercises with
solutions and a pointer onwards, and keeps its stored outputs small.  Models
and losses come from vaelib: one chapter may write a small VAE out to show
what vaelib does, and checks it against vaelib there.
"""

from __future__ import annotations

import ast
import json
import re
import types
from pathlib import Path

import pytest
import yaml

import vaelib

REPO = Path(__file__).resolve().parents[1]
MAX_LINE = 88  # characters: the width of a code block on the page
MAX_CELL_LINES = 25  # a narrative, a call, a figure, a check


def _toc_files(entries) -> list[str]:
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("chapters", "sections", "parts"):
            files += _toc_files(entry.get(key, []))
    return files


TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
PAGES = [TOC["root"], *_toc_files(TOC.get("chapters", []) + TOC.get("parts", []))]
CHAPTERS = [REPO / f"{page}.ipynb" for page in PAGES if (REPO / f"{page}.ipynb").exists()]


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _code(path: Path) -> str:
    return "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "code")


def _markdown(path: Path) -> str:
    return "\n".join(_source(c) for c in _cells(path) if c["cell_type"] == "markdown")


def test_every_page_of_the_table_of_contents_exists_and_chapters_are_notebooks():
    for page in PAGES:
        assert (REPO / f"{page}.ipynb").exists() or (REPO / f"{page}.md").exists(), page
    assert len(CHAPTERS) >= 5


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_title_pinned_colab_install_and_macros(path):
    cells = _cells(path)
    title = _source(cells[0])
    assert cells[0]["cell_type"] == "markdown" and re.match(r"# [A-Z]", title), "a title, the TOC numbers it"
    install = cells[1]
    source = _source(install)
    assert install["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in source
    assert f'"vaelib=={vaelib.__version__}"' in source, "the install cell pins the version the book was built with"
    assert "remove-cell" in install["metadata"].get("tags", [])  # the HTML book needs no install step
    macros = cells[2]
    assert macros["cell_type"] == "markdown" and "remove-cell" in macros["metadata"].get("tags", [])
    defined = dict(re.findall(r"\\newcommand\{\\(\w+)\}\{(.+)\}", _source(macros)))
    assert defined == CONFIG["sphinx"]["config"]["mathjax3_config"]["tex"]["macros"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_says_what_it_teaches_and_how_long_it_runs(path):
    opening = _source(_cells(path)[0])
    assert "{glue:text}`runtime_seconds" in opening, "the measured run time, glued into the opening"
    assert 'glue("runtime_seconds"' in _code(path)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_ends_with_takeaways_exercises_solutions_and_what_comes_next(path):
    text = _markdown(path)
    assert re.search(r"^## Key takeaways", text, re.M)
    exercises = re.findall(r"```\{exercise\}[^\n]*\n:label: ([\w-]+)", text)
    assert 3 <= len(exercises) <= 6, f"{len(exercises)} exercises"
    solved = set(re.findall(r"`{3,4}\{solution(?:-start)?\} ([\w-]+)", text))
    assert set(exercises) <= solved, f"exercises without a solution: {set(exercises) - solved}"
    assert ":class: dropdown" in text  # solutions are folded
    last = _source(_cells(path)[-1]) + _source(_cells(path)[-2])
    assert "{doc}`" in last, "a pointer to the next page"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_speaks_to_the_reader_not_about_the_notes(path):
    assert not re.search(r"\b(the|one of the|another|a) notes?\b (say|says|said|claim|suggest|write)", _markdown(path))


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_code_fits_the_page_and_cells_stay_short(path):
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        lines = _source(cell).splitlines()
        for line in lines:
            assert len(line) <= MAX_LINE, f"cell {i}: {len(line)} characters: {line[:60]}..."
        assert len(lines) <= MAX_CELL_LINES, f"cell {i} has {len(lines)} lines; split it or move drawing into vl.plot"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_figure_is_numbered_captioned_and_has_alt_text(path):
    for i, cell in enumerate(_cells(path)):
        images = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if not images:
            continue
        options = cell["metadata"].get("mystnb", {})
        figure, image = options.get("figure", {}), options.get("image", {})
        assert figure.get("name", "").startswith("fig-"), f"cell {i}: figure without a name"
        assert len(figure.get("caption", "")) > 20, f"cell {i}: figure without a caption that states its point"
        assert len(image.get("alt", "")) > 20, f"cell {i}: figure without alt text"
        assert len(images) == 1, f"cell {i}: one figure per cell"
        # a value returned beside a figure (say, the Text list of ax.set) becomes a second, duplicate figure
        values = [o for o in cell["outputs"] if o["output_type"] == "execute_result" and "image/png" not in o["data"]]
        assert not values, f"cell {i}: a figure cell also returns a value; end it with plt.show()"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_uses_vaelib_and_does_not_redefine_it(path):
    code = _code(path)
    assert "import vaelib as vl" in code
    assert "sys.path" not in code  # no path tricks: the package is installed
    assert "plt.style.use(vl.plot.STYLE)" in code or "plt." not in code  # one plotting style


def _vl_names(tree) -> set[tuple[str, ...]]:
    """Every ``vl.a`` or ``vl.a.b`` the code uses (the two leading attributes of each chain off ``vl``)."""
    names = set()
    for node in ast.walk(tree):
        chain = []
        while isinstance(node, ast.Attribute):
            chain.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id == "vl" and chain:
            names.add(tuple(reversed(chain))[:2])
    return names


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_uses_only_public_names(path):
    """``vl.X`` is in ``vaelib.__all__``, ``vl.ns.Y`` in the namespace's ``__all__``; nothing is imported from
    the package's private modules."""
    # shell and magic lines, alone or assigned (``out = !cmd``), are not Python
    code = re.sub(r"^([ \t]*)(\w+ = )?[!%].*$", r"\1pass", _code(path), flags=re.M)
    tree = ast.parse(code)
    names = _vl_names(tree)
    assert names, "the scan sees the chapter's vl names"
    for chain in sorted(names):
        assert chain[0] in vaelib.__all__, f"vl.{chain[0]} is not public"
        home = getattr(vaelib, chain[0])
        if isinstance(home, types.ModuleType) and len(chain) == 2:
            assert chain[1] in home.__all__, f"vl.{'.'.join(chain)} is not in vl.{chain[0]}.__all__"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vaelib"):
            raise AssertionError(f"from {node.module} import ...: use vl.<name>")
        if isinstance(node, ast.Import):
            assert all(a.name == "vaelib" for a in node.names if a.name.startswith("vaelib")), ast.unparse(node)


def test_at_most_one_chapter_writes_a_model_out_and_checks_it_against_vaelib():
    writers = [p for p in CHAPTERS if re.search(r"class \w+\((nn\.|torch\.nn\.)Module\)", _code(p))]
    assert len(writers) <= 1, [p.stem for p in writers]
    for path in writers:
        code = _code(path)
        assert "vl.fit(" in code and re.search(r"assert .*(abs|isclose)", code), "the written-out VAE is checked"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_outputs_stay_small_and_clean(path):
    assert path.stat().st_size < 1_000_000, "stored outputs too large: lower figure sizes or dpi"
    for i, cell in enumerate(_cells(path)):
        for output in cell.get("outputs", []):
            assert len(json.dumps(output)) < 250_000, f"cell {i}: one output over 250 kB"
            assert output["output_type"] != "error", f"cell {i} stored an error"
            assert output.get("name") != "stderr", f"cell {i} stored a warning: {''.join(output.get('text', ''))[:200]}"
            # a progress bar is for the person running the cell: stored, it is a dead widget
            assert "application/vnd.jupyter.widget-view+json" not in output.get("data", {}), f"cell {i}: widget"
    assert "widgets" not in json.loads(path.read_text())["metadata"], "widget state stored: execute with CI=true"


def test_nbval_compares_stored_floats_to_ten_decimals():
    """``.ci/test`` compares the checked outputs through ``.ci/nbval.cfg``: the last digits of a float64,
    which CPUs round differently, are dropped; a change in the tenth decimal still fails."""
    from nbval.plugin import get_sanitize_patterns

    assert "--nbval-sanitize-with .ci/nbval.cfg book" in (REPO / ".ci" / "test").read_text(encoding="utf8")
    patterns = get_sanitize_patterns((REPO / ".ci" / "nbval.cfg").read_text(encoding="utf8"))
    assert patterns, "no regex/replace pair in .ci/nbval.cfg"

    def sanitize(text: str) -> str:  # as nbval does, pattern by pattern
        for regex, replace in patterns:
            text = re.sub(regex, replace, text)
        return text

    # Glued values of chapters 3 and 2, executed on an Intel Xeon and then on an AMD EPYC.
    assert sanitize("1.8304809400323383") == sanitize("1.830480940032336")
    assert sanitize("'0.9130931696087491'") == sanitize("'0.9130931696087486'")
    assert sanitize("[-3.1e-05, 2.718281828459045]") == sanitize("[-3.1e-05, 2.7182818284590455]")
    assert sanitize("1.8304809401323383") != sanitize("1.8304809400323383")  # the tenth decimal
    assert sanitize("ELBO -100.82 nats, KL 25.3519") == "ELBO -100.82 nats, KL 25.3519"  # printed: untouched
