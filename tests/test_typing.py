"""What type checkers see of @rate_limit: the function's own signature and a typed ``rate_limit`` handle."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


def _mypy(path: Path) -> list[str]:
    """mypy --strict's error lines for ``path`` (the suite's own interpreter, the checkout first on the path)."""
    root = HERE.parent
    env = {**os.environ, "MYPYPATH": str(root)}
    found = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-version", "3.10",
         "--follow-imports", "silent", "--config-file", os.devnull, str(path)],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    return [line for line in found.stdout.splitlines() if ": error:" in line]


@pytest.mark.slow
def test_mypy_strict_sees_the_signature_and_the_handle() -> None:
    """A checked file calling decorated functions, methods and their handles passes mypy --strict."""
    assert _mypy(HERE / "typing_rate_limit.py") == []


@pytest.mark.slow
def test_mypy_strict_refuses_wrong_calls_and_handle_misuse() -> None:
    """Wrong arguments, unknown keywords, unknown handle methods and a wrong return type are mypy errors."""
    path = HERE / "typing_rate_limit_errors.py"
    expected = {
        number: re.search(r"# E: ([\w-]+)", line).group(1)  # type: ignore[union-attr]
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "# E:" in line
    }
    errors = _mypy(path)
    found = {int(line.split(":")[1]): line.rsplit("[", 1)[-1].rstrip("]") for line in errors}
    assert found == expected, "\n".join(errors)


def test_the_checked_file_also_runs() -> None:
    """The assertions mypy checks statically hold at run time too (the handle classes are the real ones)."""
    from tests import typing_rate_limit

    typing_rate_limit.check()
