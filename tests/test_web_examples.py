"""The web examples run as README.rst documents them, each refusing the fourth request."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.children import child_env

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["fastapi_app", "flask_app", "django_app"])
def test_example_runs_and_limits(name: str) -> None:
    """`python examples/<name>.py` exits 0 and shows three 200s, then a 429."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{name}.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env({"PATH": ""}, LIMIFY_STORAGE="memory://"),
    )
    assert done.returncode == 0, done.stderr
    statuses = [
        line.split(":")[1].split()[0] for line in done.stdout.splitlines() if line.startswith("GET /items")
    ]
    assert statuses == ["200", "200", "200", "429"]
