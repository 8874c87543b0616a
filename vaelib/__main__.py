"""``python -m vaelib`` runs the command-line interface.

Importing the package and :mod:`vaelib.cli` loads no torch (the package
imports its names on first use), so everything that takes time, torch's
import included, runs inside :func:`vaelib.cli.main`, which ends a Ctrl-C
with one line and exit status 130.
"""

import sys

from .cli import main

sys.exit(main())
