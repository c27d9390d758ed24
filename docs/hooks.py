"""MkDocs hooks: what the site shows that is computed during the build, never typed in.

* ``img/algorithms/<name>.png``: each algorithm of ``limify.core.algorithms.ALGORITHMS``
  driven through the same burst of calls on an ``InMemoryAdapter`` whose clock is a
  ``ManualClock``, so every figure is the real implementation's decisions (the page
  ``algorithms.md`` shows them), plus ``compared.png`` with all of them on one chart.
* ``<!-- benchmark-tables -->`` in a page: replaced by the tables of the committed
  benchmark run (``benchmarks/results/readme-run.json``, the run README.rst reports),
  printed by ``benchmarks.rst`` and turned into Markdown tables.
* The API reference's docstrings are written for Sphinx as well (``:class:`~limify.Plan```):
  the role markers left in the rendered HTML are dropped, and ``~`` keeps the last name.
* ``<!-- benchmark-reading -->``: replaced by README.rst's own reading of that run (the
  list after "Reading these numbers honestly:" in its "Performance" section), so the
  figures quoted there are written in one place only.

Run by ``mkdocs build`` (``hooks:`` in mkdocs.yml); matplotlib comes with the ``docs`` extra.
"""

from __future__ import annotations

import importlib.util
import io
import json
import re
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # limify, when it is not installed (mkdocs serve from a checkout)

#: The burst every figure shows: a limit of LIMIT per PERIOD seconds, and a client
#: calling every STEP seconds from BURST_START to BURST_END (four times the rate).
LIMIT, PERIOD = 10, 10.0
STEP, BURST_START, BURST_END, SHOWN_UNTIL = 0.25, 4.0, 34.0, 40.0
#: How long a concurrency-limited call runs before it releases its slot.
CALL_SECONDS = 4.0
#: The simulated clock starts on a multiple of PERIOD, so windows open at 0, 10, 20 ...
START_US = 1_700_000_000_000_000
#: A Sphinx role left before inline code in the rendered HTML: ``:class:<code>~a.B</code>``.
SPHINX_ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|mod|data|attr|exc|obj|const):(<code>)(~?)([^<]*)</code>"
)
MARKER = "<!-- benchmark-tables -->"
READING = "<!-- benchmark-reading -->"
RUN = ROOT / "benchmarks" / "results" / "readme-run.json"


class Trace(NamedTuple):
    """One algorithm's answers to the burst: attempt times, admitted or not."""

    name: str
    times: list[float]
    admitted: list[bool]


def simulate(name: str) -> Trace:
    """Drive the algorithm called ``name`` through the burst on a ManualClock; its decisions."""
    from limify import InMemoryAdapter, ManualClock, Plan
    from limify.core.algorithms import ALGORITHMS

    clock = ManualClock(START_US)
    shell: Any = ALGORITHMS[name][0](InMemoryAdapter(clock=clock))
    plan = Plan("burst", LIMIT, PERIOD)
    key = f"limify:docs:{name}"
    held: list[tuple[float, str]] = []  # concurrency: (release time, lease token)
    times, admitted = [], []
    steps = int(round((BURST_END - BURST_START) / STEP))
    for index in range(steps):
        at = BURST_START + index * STEP
        clock.set(START_US + int(at * 1_000_000))
        if name == "concurrency":
            for done in [lease for lease in held if lease[0] <= at]:
                shell.release(key, plan, done[1])
                held.remove(done)
            result, token = shell.acquire(key, plan)
            if result.allowed:
                held.append((at + CALL_SECONDS, token))
        else:
            result = shell.check(key, plan)
        times.append(at)
        admitted.append(result.allowed)
    return Trace(name, times, admitted)


def cumulative(trace: Trace) -> tuple[list[float], list[int]]:
    """The step curve of admissions so far: x from 0 to SHOWN_UNTIL, y the count admitted."""
    xs, ys, total = [0.0], [0], 0
    for at, ok in zip(trace.times, trace.admitted):
        if ok:
            total += 1
            xs.append(at)
            ys.append(total)
    xs.append(SHOWN_UNTIL)
    ys.append(total)
    return xs, ys


def figure_png(trace: Trace) -> bytes:
    """One algorithm's figure: admissions so far, and every attempt marked admitted or refused."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    xs, ys = cumulative(trace)
    fig, (ticks, curve) = pyplot.subplots(
        2, 1, figsize=(7.5, 3.4), sharex=True, gridspec_kw={"height_ratios": [1, 4]}, dpi=100
    )
    ok = [at for at, allowed in zip(trace.times, trace.admitted) if allowed]
    refused = [at for at, allowed in zip(trace.times, trace.admitted) if not allowed]
    ticks.eventplot([ok, refused], colors=["#2e7d32", "#c62828"], lineoffsets=[1, 0], linelengths=0.8)
    ticks.set_yticks([1, 0], ["admitted", "refused"])
    ticks.set_ylim(-0.6, 1.6)
    ticks.set_title(
        f"{trace.name}: {LIMIT} per {PERIOD:g} s, one call every {STEP:g} s from t={BURST_START:g} s"
    )
    curve.step(xs, ys, where="post", color="#303f9f", label="admitted so far")
    steady = [BURST_START, SHOWN_UNTIL]
    curve.plot(steady, [LIMIT + (t - BURST_START) * LIMIT / PERIOD for t in steady], "--", color="#9e9e9e",
               label=f"burst of {LIMIT}, then {LIMIT / PERIOD:g}/s")  # fmt: skip
    for boundary in range(int(PERIOD), int(SHOWN_UNTIL), int(PERIOD)):
        curve.axvline(boundary, color="#e0e0e0", linewidth=0.8, zorder=0)
    curve.set_xlim(0, SHOWN_UNTIL)
    curve.set_ylim(0, max(ys) + 6)
    curve.set_xlabel("time (s)")
    curve.set_ylabel("calls admitted")
    curve.legend(loc="upper left", fontsize="small", frameon=False)
    fig.tight_layout()
    return _png(fig)


def comparison_png(traces: list[Trace]) -> bytes:
    """All algorithms' admissions so far on one chart."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    fig, axes = pyplot.subplots(figsize=(7.5, 4.0), dpi=100)
    for trace in traces:
        xs, ys = cumulative(trace)
        axes.step(xs, ys, where="post", label=trace.name)
    axes.set_xlim(0, SHOWN_UNTIL)
    axes.set_xlabel("time (s)")
    axes.set_ylabel("calls admitted")
    axes.set_title(f"The same burst, every algorithm ({LIMIT} per {PERIOD:g} s)")
    axes.legend(loc="upper left", fontsize="small", ncol=2, frameon=False)
    fig.tight_layout()
    return _png(fig)


def _png(fig: Any) -> bytes:
    from matplotlib import pyplot

    out = io.BytesIO()
    fig.savefig(out, format="png")
    pyplot.close(fig)
    return out.getvalue()


def plots() -> dict[str, bytes]:
    """Site path -> PNG bytes, for every algorithm of the registry and the comparison."""
    from limify.core.algorithms import ALGORITHMS

    traces = [simulate(name) for name in ALGORITHMS]
    images = {f"img/algorithms/{trace.name}.png": figure_png(trace) for trace in traces}
    images["img/algorithms/compared.png"] = comparison_png(traces)
    return images


def markdown_tables(rst: str) -> str:
    """``benchmarks.rst``'s output (reStructuredText simple tables) as Markdown."""
    out: list[str] = []
    lines = rst.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if re.fullmatch(r"=+( +=+)*", line):
            spans = [match.span() for match in re.finditer(r"=+", line)]
            rows: list[list[str]] = []
            index += 1
            while index < len(lines) and not (re.fullmatch(r"=+( +=+)*", lines[index]) and len(rows) > 1):
                if not re.fullmatch(r"=+( +=+)*", lines[index]):
                    text = lines[index]
                    cells = [text[start : (spans[n + 1][0] if n + 1 < len(spans) else None)].strip()
                             for n, (start, _) in enumerate(spans)]  # fmt: skip
                    rows.append([cell.replace("``", "`") for cell in cells])
                index += 1
            header, *body = rows
            out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            out += ["| " + " | ".join(cells) + " |" for cells in body]
            out.append("")
        else:
            out.append(line.replace("``", "`"))
        index += 1
    return "\n".join(out)


def benchmark_tables() -> str:
    """The committed run's tables, as Markdown."""
    # benchmarks/ is not installed with limify: load its (standard-library only) printer by path.
    spec = importlib.util.spec_from_file_location("limify_benchmark_tables", ROOT / "benchmarks" / "rst.py")
    assert spec is not None and spec.loader is not None
    printer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(printer)
    return markdown_tables(printer.summary(json.loads(RUN.read_text(encoding="utf-8"))))


def benchmark_reading() -> str:
    """README.rst's bullet list after "Reading these numbers honestly:", as Markdown."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    start = text.index("Reading these numbers honestly:")
    lines = text[start:].splitlines()[2:]
    reading = []
    for line in lines:
        if line and not line.startswith(("* ", "  ")):
            break  # the next section's title
        reading.append(line)
    return "\n".join(reading).strip().replace("``", "`") + "\n"


def on_files(files: Any, config: Any) -> Any:
    """Add the generated figures to the site's files (so links to them are checked too)."""
    from mkdocs.structure.files import File

    for path, png in plots().items():
        files.append(File.generated(config, path, content=png))
    return files


def without_sphinx_roles(html: str) -> str:
    """``html`` with ``:class:<code>~limify.Plan</code>`` shown as ``<code>Plan</code>``."""

    def code(match: re.Match[str]) -> str:
        name = match.group(3).rsplit(".", 1)[-1] if match.group(2) else match.group(3)
        return f"<code>{name}</code>"

    return SPHINX_ROLE.sub(code, html)


def on_page_content(html: str, page: Any, config: Any, files: Any) -> str:
    """Drop the Sphinx roles the API reference's docstrings carry."""
    return without_sphinx_roles(html)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Put the benchmark tables where a page asks for them."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, benchmark_tables())
    if READING in markdown:
        markdown = markdown.replace(READING, benchmark_reading())
    return markdown
