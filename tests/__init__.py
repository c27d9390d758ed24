"""Limify's test suite: it tests the installed limify when there is one, else the checkout.

``python -m pip install '.[test]' && pytest`` (what README.rst and .ci/run do)
builds a wheel, installs it, and runs the suite against that installation: a file
missing from the wheel fails here. Run the ``pytest`` command, not ``python -m
pytest``: ``python -m`` puts the working directory first on ``sys.path``, and
pytest loads Limify's plugin (an entry point) at start-up, before anything here
runs, so the checkout's ``limify/`` would be the one imported. pytest itself puts
the directory above this package on ``sys.path`` as it imports it, in front, where
the checkout would shadow the installed copy for the test modules; so importing
this package moves the checkout to the end of ``sys.path``, and
``--import-mode=append`` (setup.cfg) keeps pytest from putting it back in front
as it imports each test module. Without an installed copy (``PYTHONPATH=.``) or
with an editable one (``pip install -e``), limify still comes from the checkout.
Subprocesses started by the tests get the same limify (see tests/children.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _checkout_last() -> None:
    checkout = [entry for entry in sys.path if Path(entry or os.curdir).resolve() == ROOT]
    for entry in checkout:
        sys.path.remove(entry)
    if checkout:
        sys.path.append(str(ROOT))


_checkout_last()
