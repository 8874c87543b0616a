"""Port the drafted cells (ch5-cells.json) into book/05_mnist.ipynb by cell id: source and metadata.

Run after `python benchmarks/pretrained.py export` of both Burda models, then execute chapter 5 and check
every claim against the real numbers.  Temporary, like the draft: delete both once ported.
"""

import json
from pathlib import Path

import nbformat

HERE = Path(__file__).parent
NOTEBOOK = HERE.parents[1] / "book" / "05_mnist.ipynb"

draft = json.loads((HERE / "ch5-cells.json").read_text())["cells"]
nb = nbformat.read(NOTEBOOK, as_version=4)
cells = {cell.id: cell for cell in nb.cells}
for cid, new in draft.items():
    source = new["source"] if isinstance(new["source"], str) else "".join(new["source"])
    cells[cid].source = source
    if "metadata" in new:
        cells[cid].metadata = nbformat.from_dict(new["metadata"])
nbformat.write(nb, NOTEBOOK)
print(f"ported {len(draft)} cells: {', '.join(draft)}")
