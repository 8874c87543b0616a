"""The package's version, in a module of its own: the single source that ``vaelib.__version__``,
the checkpoints, the CLI and ``pyproject.toml`` read (a leaf, so no module imports up into the package)."""

__version__ = "0.3.0"
