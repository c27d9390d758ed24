"""The package as users get it: the wheel's files, the floors CI tests, the extras' import errors.

CI runs the suite on a wheel pip built and installed (``pip install '.[test]'``)
with ``LIMIFY_TEST_INSTALLED=1``; the first two tests then read that
installation. Run from a checkout without an installed wheel, they build one
from a copy of the sources instead.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

import limify
from tests.children import ROOT, child_env

PACKAGED = {".py", ".lua", ".typed"}


def installed_wheel() -> importlib.metadata.Distribution | None:
    """The limify distribution installed from a wheel, if any (not an editable install, not the checkout)."""
    try:
        dist = importlib.metadata.distribution("limify")
    except importlib.metadata.PackageNotFoundError:
        return None
    if Path(str(dist.locate_file(""))).resolve() == ROOT:  # the checkout's own limify.egg-info
        return None
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    return None if direct.get("dir_info", {}).get("editable") else dist


def source_files() -> set[str]:
    """The package's files in the checkout that a wheel must carry, relative to the repository."""
    return {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "limify").rglob("*")
        if path.suffix in PACKAGED and "__pycache__" not in path.parts
    }


def test_the_suite_imports_the_installed_wheel_when_there_is_one() -> None:
    """With limify installed from a wheel the suite imports that copy; LIMIFY_TEST_INSTALLED=1 requires one."""
    dist = installed_wheel()
    package = Path(limify.__file__).resolve().parent
    if os.environ.get("LIMIFY_TEST_INSTALLED") == "1":
        assert dist is not None, "LIMIFY_TEST_INSTALLED=1, but limify is not installed from a wheel"
        assert package.parent == Path(sysconfig.get_paths()["purelib"]).resolve(), (
            f"{package} is not the installed wheel (run `pytest`, not `python -m pytest`)"
        )
    if dist is None:
        assert package == ROOT / "limify", "no installed wheel: the checkout's limify is the one to test"
    else:
        assert package == Path(str(dist.locate_file("limify"))).resolve()
        assert ROOT not in package.parents, (
            f"the checkout's sources shadow the installed wheel: {package} (run `pytest`, not `python -m pytest`)"
        )


@pytest.mark.slow
def test_the_wheel_carries_every_file_of_the_package_and_the_license(tmp_path: Path) -> None:
    """Every .py, .lua and py.typed of limify/ and the LICENSE are in the wheel (installed, or built here)."""
    dist = installed_wheel()
    if dist is not None:
        home = Path(str(dist.locate_file("")))
        files = {str(path) for path in dist.files or []}
        carried = {name for name in files if name.startswith("limify/")}
        licenses = [home / name for name in files if name.endswith("LICENSE") and ".dist-info/" in name]
        license_text = licenses[0].read_text(encoding="utf-8") if licenses else None
    else:
        source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout
        shutil.copytree(ROOT / "limify", source / "limify", ignore=shutil.ignore_patterns("__pycache__"))
        for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.rst", "LICENSE"):
            shutil.copy2(ROOT / name, source / name)
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"), str(source)],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        with zipfile.ZipFile(next((tmp_path / "dist").glob("limify-*.whl"))) as wheel:
            names = wheel.namelist()
            carried = {name for name in names if name.startswith("limify/")}
            licenses = [name for name in names if name.endswith("LICENSE") and ".dist-info/" in name]
            license_text = wheel.read(licenses[0]).decode() if licenses else None
    assert source_files() - carried == set(), "files of limify/ missing from the wheel: see package_data"
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8"), "the wheel has no LICENSE"


def floors_tool() -> ModuleType:
    """.ci/floors.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("ci_floors", ROOT / ".ci" / "floors.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_floors_files_are_what_setup_cfg_declares() -> None:
    """.ci/floors.txt and floors-bench.txt pin exactly setup.cfg's `>=` floors (regenerate with --write)."""
    floors = floors_tool()
    ci_run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    for name, (install, _, _) in floors.FILES.items():
        assert (ROOT / ".ci" / name).read_text(encoding="utf-8") == floors.constraints(name), name
        assert f"--constraint .ci/{name} {install.split()[0]}" in ci_run, (
            f".ci/run does not install {install}"
        )
    main, bench = floors.floors(), floors.floors(extras=("bench",), raise_core=True)
    assert {"redis", "wrapt", "anyio", "celery", "flask", "django", "fastapi", "httpx", "pytest"} <= set(main)
    assert {"redis", "wrapt", "anyio", "limits"} <= set(bench) and "limits" not in main


def test_the_floors_tool_refuses_a_missing_or_disagreeing_floor(tmp_path: Path) -> None:
    """A requirement without `>=`, or one package with two floors, is refused; only bench may raise a core floor."""
    floors = floors_tool()
    setup_cfg = tmp_path / "setup.cfg"
    template = "[options]\ninstall_requires =\n    redis>=5.0\n{core}\n[options.extras_require]\ntest =\n    {test}\n"
    setup_cfg.write_text(template.format(core="    wrapt", test="redis>=5.0"), encoding="utf-8")
    with pytest.raises(ValueError, match="'wrapt' names no floor"):
        floors.floors(setup_cfg)
    setup_cfg.write_text(
        template.format(core="", test="redis>=6 ; python_version >= '3.10'"), encoding="utf-8"
    )
    with pytest.raises(ValueError, match="redis has the floor 5.0 in install_requires but 6 in extra test"):
        floors.floors(setup_cfg)
    setup_cfg.write_text(
        template.format(core="    types-redis", test="Redis[hiredis] >= 5.0, <9"), encoding="utf-8"
    )
    assert floors.floors(setup_cfg) == {"redis": "5.0"}
    setup_cfg.write_text(
        template.format(core="", test="redis>=6").replace("test =", "bench ="), encoding="utf-8"
    )
    assert floors.floors(setup_cfg) == {"redis": "5.0"}  # bench has a file of its own,
    assert floors.floors(setup_cfg, ("bench",), raise_core=True) == {
        "redis": "6"
    }  # where it may raise a floor


#: Optional module, the distributions it needs (hidden below), what the message calls them, the extra.
GUARDS = [
    ("limify.adapters.flask", "flask", "Flask", "flask"),
    ("limify.adapters.django", "django", "Django", "django"),
    ("limify.adapters.fastapi.dependencies", "starlette,fastapi", "Starlette (FastAPI)", "fastapi"),
    ("limify.contrib.celery", "celery", "Celery", "celery"),
    ("limify.contrib.httpx", "httpx", "httpx", "httpx"),
    ("limify.contrib.requests", "requests", "requests", "requests"),
    ("limify.contrib.opentelemetry", "opentelemetry", "OpenTelemetry", "opentelemetry"),
    ("limify.contrib.prometheus", "prometheus_client", "prometheus_client", "prometheus"),
]

#: Imports argv[1] in a process where the packages named in argv[2] look uninstalled.
HIDDEN_IMPORT = """
import importlib, sys

hidden = set(sys.argv[2].split(","))

class Uninstalled:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Uninstalled)
try:
    importlib.import_module(sys.argv[1])
except ImportError as error:
    print(f"{type(error).__name__}: {error}")
else:
    print("imported")
"""


@pytest.mark.parametrize(("module", "hidden", "needs", "extra"), GUARDS)
def test_an_integration_without_its_extra_names_the_extra(
    module: str, hidden: str, needs: str, extra: str, tmp_path: Path
) -> None:
    """Importing the integration while its package is uninstalled raises ImportError naming its extra."""
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN_IMPORT, module, hidden],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    missing = hidden.split(",")[0]
    expected = (
        f"ImportError: {module} needs {needs}: pip install 'limify[{extra}]' (no module named '{missing}')"
    )
    assert done.stdout.strip() == expected
