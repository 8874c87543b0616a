"""Serve MathJax 3 from the book's own ``_static`` folder instead of a CDN.

Sphinx's ``mathjax_path`` defaults to jsDelivr. This extension points it at
``_static/mathjax/tex-mml-chtml.js`` and copies there the ``es5`` folder of
MathJax 3.2 as packaged on PyPI by ``django-static-mathjax`` (in the ``book``
extra), so the book reads offline and the browser check
(``.ci/test_built_book.py``) loads MathJax without a network. Without that
package the build warns (a strict build fails) and keeps the CDN.
"""

from __future__ import annotations

from pathlib import Path

from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

logger = logging.getLogger(__name__)
FOLDER = "mathjax"  # under the build's _static/
SCRIPT = "tex-mml-chtml.js"  # the component Sphinx loads by default, from the CDN


def packaged_es5() -> Path | None:
    """The ``es5`` folder of the installed MathJax (``django-static-mathjax``), or None."""
    try:
        import mathjax
    except ImportError:
        return None
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    return es5 if (es5 / SCRIPT).is_file() else None


def _point_at_local_copy(app, config) -> None:
    if packaged_es5() is None:
        logger.warning("MathJax is loaded from a CDN: pip install django-static-mathjax (vaelib[book]) to serve it")
        return
    config.mathjax_path = f"{FOLDER}/{SCRIPT}"


def _copy_into_build(app, exception) -> None:
    es5 = packaged_es5()
    if exception is None and es5 is not None and app.builder.format == "html":
        copy_asset(es5, Path(app.outdir) / "_static" / FOLDER)


def setup(app):
    app.connect("config-inited", _point_at_local_copy)
    app.connect("build-finished", _copy_into_build)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
