"""How the tests start Python subprocesses: on the very limify the suite itself imports.

A child gets ``PYTHONPATH`` = the directory holding that limify (site-packages for
an installed wheel, the checkout otherwise), then the checkout (for ``tests``,
``benchmarks`` and ``examples``). ``python -m`` and ``python -c`` also put their
working directory first on ``sys.path``: run them in a directory without a
``limify/`` (a ``tmp_path``), never in the checkout, or they test its sources.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Mapping
from pathlib import Path

import limify

ROOT = Path(__file__).resolve().parent.parent
#: The directory the suite's ``limify`` package was imported from.
LIMIFY_HOME = str(Path(limify.__file__).resolve().parent.parent)


def child_env(base: Mapping[str, str] | None = None, **variables: str) -> dict[str, str]:
    """``base`` (default: this process's environment) plus ``variables``, with the suite's limify first."""
    env = dict(os.environ if base is None else base)
    env.update(variables)
    inherited = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([LIMIFY_HOME, str(ROOT), *inherited]))
    return env


def script(name: str) -> str:
    """The console script ``name`` installed beside this interpreter (e.g. ``celery``)."""
    return str(Path(sysconfig.get_path("scripts")) / name)
