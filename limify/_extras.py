"""The error an optional integration raises when its extra is not installed."""

from __future__ import annotations


def missing_extra(module: str, needs: str, extra: str, error: ModuleNotFoundError) -> ImportError:
    """``ImportError: <module> needs <needs>: pip install 'limify[<extra>]'``, naming what was missing.

    Raised from the ``ModuleNotFoundError`` of the integration's own imports
    (``raise missing_extra(...) from error``).
    """
    missing = f" (no module named {error.name!r})" if error.name else ""
    return ImportError(f"{module} needs {needs}: pip install 'limify[{extra}]'{missing}", name=error.name)
