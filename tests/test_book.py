"""House rules for the chapters, checked on the stored notebooks (no kernel needed):
every chapter in the table of contents exists, installs vaelib on Colab and nowhere
else, imports the library instead of redefining models or losses, and keeps its
stored outputs small."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _toc_files(entries) -> list[str]:
    files = []
    for entry in entries:
        if "file" in entry:
            files.append(entry["file"])
        for key in ("chapters", "sections", "parts"):
            files += _toc_files(entry.get(key, []))
    return files


TOC = yaml.safe_load((REPO / "_toc.yml").read_text())
PAGES = [TOC["root"], *_toc_files(TOC.get("chapters", []) + TOC.get("parts", []))]
CHAPTERS = sorted(REPO / f"{page}.ipynb" for page in PAGES if (REPO / f"{page}.ipynb").exists())


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def _code(path: Path) -> str:
    return "\n".join("".join(c["source"]) for c in _cells(path) if c["cell_type"] == "code")


def test_the_table_of_contents_has_five_notebook_chapters_and_every_page_exists():
    assert len(CHAPTERS) == 5
    for page in PAGES:
        assert (REPO / f"{page}.ipynb").exists() or (REPO / f"{page}.md").exists(), page


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_opens_with_its_title_then_a_colab_only_install(path):
    cells = _cells(path)
    assert cells[0]["cell_type"] == "markdown" and "".join(cells[0]["source"]).startswith("# ")
    install = cells[1]
    source = "".join(install["source"])
    assert install["cell_type"] == "code" and 'if "google.colab" in sys.modules:' in source
    assert "pip install" in source and "vaelib" in source
    assert "remove-cell" in install["metadata"].get("tags", [])  # the HTML book needs no install step


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_uses_vaelib_and_does_not_redefine_it(path):
    code = _code(path)
    assert "import vaelib as vl" in code
    assert "sys.path" not in code  # no path tricks: the package is installed
    assert not re.search(r"class \w+\((nn\.|torch\.nn\.)Module\)", code), "models belong in vaelib"
    assert "vl.fit(" in code or "vl.elbo(" in code or "vl.information.entropy(" in code  # the math comes from the library


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_outputs_stay_small_and_clean(path):
    assert path.stat().st_size < 1_000_000, "stored outputs too large: lower figure sizes or dpi"
    for i, cell in enumerate(_cells(path)):
        for output in cell.get("outputs", []):
            assert len(json.dumps(output)) < 250_000, f"cell {i}: one output over 250 kB"
            assert output["output_type"] != "error", f"cell {i} stored an error"
            assert output.get("name") != "stderr", f"cell {i} stored a warning: {''.join(output.get('text', ''))[:200]}"
