"""The documentation site's sources: every page in the navigation, and what the build computes.

The build itself (``mkdocs build --strict``) and the browser check run in .ci/run, in a
virtualenv with the ``docs`` extra; these tests need none of it. They import docs/hooks.py
(standard library at import time) and check what its figures and tables are made of: the
real algorithms' decisions, the committed benchmark run, README.rst's reading of it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from limify import Plan
from limify.core.algorithms import ALGORITHMS
from tests.children import ROOT

DOCS = ROOT / "docs"


def load_hooks() -> ModuleType:
    """docs/hooks.py, imported from its path."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HOOKS = load_hooks()


def nav_pages() -> list[str]:
    """The pages mkdocs.yml's ``nav`` lists, in order."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:") :]
    return re.findall(r":\s+(\S+\.md)\s*$", nav, flags=re.MULTILINE)


def test_every_page_is_in_the_navigation_and_every_entry_exists() -> None:
    """Each Markdown page of docs/ is reachable from the navigation, and the navigation names no missing page."""
    listed = nav_pages()
    on_disk = sorted(path.relative_to(DOCS).as_posix() for path in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    assert len(set(listed)) == len(listed), "a page is listed twice"


def test_the_storage_section_lists_the_other_stores() -> None:
    """PostgreSQL and Memcached have their pages under Storage, beside the storage adapters page."""
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    storage = text[text.index("  - Storage:") : text.index("  - Running in production")]
    for page in ("storage.md", "redis.md", "postgresql.md", "memcached.md", "failure-policies.md"):
        assert page in storage
        assert (DOCS / page).read_text(encoding="utf-8").startswith("# ")


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_each_figure_is_the_algorithms_own_decisions_within_its_bound(name: str) -> None:
    """The burst a figure shows is refused in part, and no span admits more than the algorithm's stated bound."""
    trace = HOOKS.simulate(name)
    admitted = [at for at, allowed in zip(trace.times, trace.admitted) if allowed]
    assert HOOKS.LIMIT <= len(admitted) < len(trace.times), (
        "the burst must exceed the limit, and some calls pass"
    )
    if name == "concurrency":
        # Calls hold their slot CALL_SECONDS: never more than LIMIT running at once.
        assert all(
            sum(1 for t in admitted if t <= at < t + HOOKS.CALL_SECONDS) <= HOOKS.LIMIT for at in admitted
        )
        return
    plan = Plan("burst", HOOKS.LIMIT, HOOKS.PERIOD)
    spec = ALGORITHMS[name][0].spec
    span_us = plan.period_us - 1
    for start in admitted:
        inside = sum(1 for at in admitted if start <= at <= start + span_us / 1e6)
        assert inside <= spec.admitted_bound(plan, span_us), (name, start, inside)


def test_the_algorithms_page_shows_every_figure() -> None:
    """docs/algorithms.md shows the figure of every algorithm of the registry, and the comparison."""
    page = (DOCS / "algorithms.md").read_text(encoding="utf-8")
    shown = set(re.findall(r"\]\(img/algorithms/([a-z_]+)\.png\)", page))
    assert shown == {*ALGORITHMS, "compared"}


def test_the_performance_tables_are_the_committed_runs() -> None:
    """The performance page's Markdown tables have one row per contender of the committed run, no number retyped."""
    run = json.loads(HOOKS.RUN.read_text(encoding="utf-8"))
    tables = HOOKS.benchmark_tables()
    assert "<!-- benchmark-tables -->" in (DOCS / "performance.md").read_text(encoding="utf-8")
    headers = [
        line
        for line in tables.splitlines()
        if line.startswith("| contender |") or line.startswith("| store |")
    ]
    assert len(headers) == (4 if run.get("http") else 3)  # latency, throughput, memory (and HTTP load)
    for row in run["throughput"]["rows"]:
        assert f"| {row['name']} | {row['ops_per_s']:,.0f} |" in tables


def test_the_reading_of_the_figures_is_the_readmes() -> None:
    """The performance page quotes README.rst's reading of the run, every bullet, in Markdown."""
    reading = HOOKS.benchmark_reading()
    readme = (ROOT / "README.rst").read_text(encoding="utf-8")
    after = readme[readme.index("Reading these numbers honestly:") :]
    bullets = re.findall(r"^\* ", after[: after.index("\nDevelopment\n")], flags=re.MULTILINE)
    assert bullets and reading.count("\n* ") + reading.startswith("* ") == len(bullets)
    assert "``" not in reading


def test_sphinx_roles_in_docstrings_render_as_code() -> None:
    """``:class:`~limify.Plan``` rendered by the API reference shows as ``Plan``; a full path stays full."""
    html = "see :class:<code>~limify.core.plan.Plan</code> and :func:<code>limify.configure</code>."
    assert HOOKS.without_sphinx_roles(html) == "see <code>Plan</code> and <code>limify.configure</code>."


def test_rst_tables_become_markdown_tables() -> None:
    """A reStructuredText simple table of benchmarks.rst's kind becomes a Markdown table, cells kept."""
    rst = "Intro with ``code``.\n\n=====  =====\nname   value\n=====  =====\n``a``  1.00\nb      2\n=====  =====\n"
    assert HOOKS.markdown_tables(rst).splitlines() == [
        "Intro with `code`.",
        "",
        "| name | value |",
        "|---|---|",
        "| `a` | 1.00 |",
        "| b | 2 |",
    ]


def test_the_docs_extra_is_not_installed_by_the_suite() -> None:
    """The docs extra has a floors file of its own; the suite's floors (test extra) leave it out."""
    floors = (ROOT / ".ci" / "floors.txt").read_text(encoding="utf-8")
    docs = (ROOT / ".ci" / "floors-docs.txt").read_text(encoding="utf-8")
    assert "mkdocs" not in floors and "matplotlib" not in floors
    assert {"mkdocs", "mkdocs-material", "mkdocstrings-python", "matplotlib"} <= {
        line.split("==")[0] for line in docs.splitlines() if "==" in line
    }
    run = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "mkdocs build --strict" in run and ".ci/docs" in run and Path(ROOT / ".ci" / "docs").exists()
