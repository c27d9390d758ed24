"""Every Python block of README.rst (and of docs/, when there is one) runs as shown.

The conventions, for whoever writes a block:

* ``.. code-block:: python`` blocks run, each on its own as a reader would paste
  it, in a Python process of the document's own on the suite's limify (see
  tests/children.py). A block preceded by the comment
  ``.. continues the block above`` instead runs after the previous Python block,
  in its namespace (``get_profile.rate_limit.peek`` after ``get_profile``
  is defined): say so in the prose too. Markdown documents under docs/ (every
  page, subfolders included) do the same with ```` ```python ```` fences and
  ``<!-- continues the block above -->``. A fence's language is the first word
  of its info string (```` ```python title="app.py" ```` is Python); backtick and
  tilde fences of any length are read, and every fence line of a page must open
  or close a collected block (``test_the_docs_pages_are_collected``).
* Blocks that are not Python to run say so: ``console`` for shell sessions,
  ``text`` for output or pseudo-code (also ``shell``, ``bash``, ``ini``, ``toml``,
  ``yaml``, ``json``, ``sql``). Any other language, a ``.. code::`` or ``.. sourcecode::``
  directive, or a Markdown fence without a language fails
  ``test_every_code_block_is_run_or_marked_as_not_python``: nothing is skipped
  silently.
* Servers: blocks name ``localhost`` and the default ports, which this test
  rewrites to the suite's private servers: ``redis://localhost:6379/0`` and
  ``localhost:6379`` to the session's Redis (its database is flushed first),
  ``localhost:7000`` to a node of the suite's Redis Cluster, ``localhost:26379``
  to one of its sentinels, whose service ``mymaster`` stands for,
  ``postgresql://postgres@localhost:5432/postgres`` (and ``localhost:5432``) to the
  session's PostgreSQL, ``localhost:11211`` to its memcached (flushed first). The forms
  ``localhost:<port>``, ``host="localhost", port=<port>`` and
  ``("localhost", <port>)`` are rewritten. A block naming any other
  ``localhost`` port, or ``redis.Redis()`` without arguments (the machine's own
  Redis), fails: it would not run for a reader without that server.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis

from tests.children import ROOT, child_env

CONTINUES = {".. continues the block above", "<!-- continues the block above -->"}
RUN = {"python"}
UNAVAILABLE = "server unavailable: "
SHOWN = {"console", "text", "shell", "bash", "ini", "toml", "yaml", "json", "sql"}
DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. (?P<kind>code-block|code|sourcecode)::\s*(?P<language>\S*)\s*$")
#: A Markdown fence: three or more backticks or tildes, then the info string (language first).
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    """One code block: its document, first line of code (1-based), directive, language and code."""

    document: Path
    line: int
    kind: str
    language: str
    code: str
    #: Whether it runs in the namespace of the document's previous Python block.
    continues: bool = False

    @property
    def where(self) -> str:
        return f"{self.document.relative_to(ROOT)}:{self.line}"


def continues(lines: list[str], directive: int) -> bool:
    """Whether the line before ``lines[directive]`` (blank lines aside) is the continuation marker."""
    before = [line.strip() for line in lines[:directive] if line.strip()]
    return bool(before) and before[-1] in CONTINUES


def rst_blocks(path: Path) -> list[Block]:
    """The ``code-block`` (and ``code``/``sourcecode``) directives of a reStructuredText file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    for number, text in enumerate(lines):
        match = DIRECTIVE.match(text)
        if match is None:
            continue
        indent, body, first = len(match["indent"]), [], None
        for index in range(number + 1, len(lines)):
            line = lines[index]
            if line.strip() and len(line) - len(line.lstrip()) <= indent:
                break
            if first is None and (not line.strip() or line.strip().startswith(":")):
                continue  # the blank line and the options before the code
            first = index if first is None else first
            body.append(line)
        while body and not body[-1].strip():
            body.pop()
        depth = min((len(line) - len(line.lstrip()) for line in body if line.strip()), default=0)
        code = "\n".join(line[depth:] for line in body) + "\n"
        line = (first or number) + 1
        blocks.append(Block(path, line, match["kind"], match["language"], code, continues(lines, number)))
    return blocks


def fence_language(info: str) -> str:
    """The language of a fence's info string: its first word (``python`` of ``python title="x"``)."""
    words = info.strip().lstrip("{").split()
    return words[0].lstrip(".").rstrip("}") if words else ""


def markdown_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a Markdown file (backtick or tilde fences, of any length)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, number = [], 0
    while number < len(lines):
        match = FENCE.match(lines[number])
        number += 1
        if match is None:
            continue
        start, depth, fence = number, len(match["indent"]), match["fence"]
        # A closing fence: the same character, at least as many, nothing else on the line.
        while number < len(lines) and not (
            lines[number].strip().startswith(fence) and set(lines[number].strip()) == {fence[0]}
        ):
            number += 1
        code = "\n".join(line[depth:] for line in lines[start:number]) + "\n"
        language = fence_language(match["info"])
        blocks.append(Block(path, start + 1, "fence", language, code, continues(lines, start - 1)))
        number += 1
    return blocks


def documents() -> list[Path]:
    """README.rst, then every .rst and .md file under docs/ (if any)."""
    docs = sorted((ROOT / "docs").rglob("*")) if (ROOT / "docs").is_dir() else []
    return [ROOT / "README.rst", *(path for path in docs if path.suffix in {".rst", ".md"})]


def blocks_of(path: Path) -> list[Block]:
    return markdown_blocks(path) if path.suffix == ".md" else rst_blocks(path)


ALL_BLOCKS = [block for path in documents() for block in blocks_of(path)]
PYTHON_BLOCKS = [block for block in ALL_BLOCKS if block.language in RUN and block.kind != "code"]


def test_every_code_block_is_run_or_marked_as_not_python() -> None:
    """Each code block is Python (and runs below) or says which other language it is; none escapes."""
    assert PYTHON_BLOCKS, "README.rst has no Python blocks: is the collector broken?"
    strays = [
        f"{block.where}: {block.kind}:: {block.language or '(no language)'}"
        for block in ALL_BLOCKS
        if block.kind in {"code", "sourcecode"} or block.language not in RUN | SHOWN
    ]
    assert strays == [], "mark these blocks python (to run) or console/text (not run)"


def test_the_docs_pages_are_collected() -> None:
    """Every Markdown page of docs/ is read, and each fence line opens or closes a collected block."""
    pages = [path for path in documents() if path.suffix == ".md"]
    assert pages and {path.relative_to(ROOT).as_posix() for path in pages} >= {
        "docs/index.md",
        "docs/extending.md",
    }
    for page in pages:
        fences = [
            line for line in page.read_text(encoding="utf-8").splitlines() if re.match(r"^ *(```|~~~)", line)
        ]
        assert len(fences) == 2 * len(markdown_blocks(page)), f"{page}: a fence the collector does not pair"
    docs_python = [block for block in PYTHON_BLOCKS if block.document.suffix == ".md"]
    assert len({block.document for block in docs_python}) >= 10, (
        "few docs pages have Python blocks: is the collector broken?"
    )


def placeholders(request: pytest.FixtureRequest, codes: list[str]) -> dict[str, str]:
    """What each placeholder of these blocks stands for: the suite's private servers (see the module doc).

    A Cluster or Sentinel that cannot start (no redis-server binary) fails only the
    blocks naming it: their placeholder then stands for that failure.
    """
    standalone = request.getfixturevalue("redis_server_url")
    client = redis.Redis.from_url(standalone)
    client.flushdb()
    client.close()
    url = urlsplit(standalone)
    names = {"redis://localhost:6379/0": standalone}
    ports: dict[int, tuple[str, int] | str] = {6379: (url.hostname or "127.0.0.1", url.port or 6379)}
    joined = "".join(codes)
    servers = ((7000, "cluster_url"), (26379, "sentinel_servers"), (5432, "postgres_server_url"))
    for port, fixture in (*servers, (11211, "memcached_server")):
        if not re.search(rf"\b{port}\b", joined):
            continue
        try:
            server = request.getfixturevalue(fixture)
        except pytest.fail.Exception as failure:
            ports[port] = str(failure)
            continue
        if port == 7000:
            ports[port] = ("127.0.0.1", int(urlsplit(server).netloc.split(",")[0].rsplit(":", 1)[1]))
        elif port == 5432:
            names["postgresql://postgres@localhost:5432/postgres"] = server
            found = urlsplit(server)
            ports[port] = (found.hostname or "127.0.0.1", found.port or 5432)
        elif port == 11211:
            server.flush()
            ports[port] = ("127.0.0.1", server.port)
        else:
            ports[port] = ("127.0.0.1", server.sentinels[0].port)
            names["mymaster"] = server.service
    for port, target in ports.items():
        forms = (f"localhost:{port}", f'host="localhost", port={port}', f'("localhost", {port})')
        if isinstance(target, str):
            names.update((form, UNAVAILABLE + target) for form in forms)
            continue
        host, new = target
        names.update(zip(forms, (f"{host}:{new}", f'host="{host}", port={new}', f'("{host}", {new})')))
    return names


def substitute(code: str, names: dict[str, str]) -> str:
    """``code`` with every placeholder replaced, or code raising why it cannot run on the suite's servers."""
    missing = [
        value for placeholder, value in names.items() if placeholder in code and value.startswith(UNAVAILABLE)
    ]
    for placeholder, value in names.items():
        code = code.replace(placeholder, value)
    if missing:
        problem = missing[0]
    elif "localhost" in code:
        problem = "names a localhost server the suite does not provide (see tests/test_readme_blocks.py)"
    elif re.search(r"\bRedis\(\)", code):
        problem = "redis.Redis() without arguments is the machine's own Redis: name localhost:6379"
    else:
        return code
    return f"raise AssertionError({problem!r})\n"


@pytest.fixture(scope="module")
def outcomes(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str | None]:
    """Block location -> None when it ran, else its traceback: one subprocess per document."""
    results: dict[str, str | None] = {}
    for path in documents():
        blocks = [block for block in PYTHON_BLOCKS if block.document == path]
        if not blocks:
            continue
        names = placeholders(request, [block.code for block in blocks])
        payload = {
            "path": str(path),
            "blocks": [
                {"line": block.line, "code": substitute(block.code, names), "continues": block.continues}
                for block in blocks
            ],
        }
        workdir = tmp_path_factory.mktemp("blocks")
        out = workdir / "results.json"
        done = subprocess.run(
            [sys.executable, "-m", "tests.readme_runner", str(out)],
            input=json.dumps(payload), cwd=workdir, env=child_env(), capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0 and out.exists(), done.stdout + done.stderr
        for block, outcome in zip(blocks, json.loads(out.read_text(encoding="utf-8"))):
            results[block.where] = outcome
    return results


@pytest.mark.redis
@pytest.mark.parametrize("where", [block.where for block in PYTHON_BLOCKS])
def test_python_block_runs(where: str, outcomes: dict[str, str | None]) -> None:
    """This Python block of the documentation runs, after the blocks above it, without raising."""
    assert outcomes[where] is None, f"{where} raised:\n{outcomes[where]}"


def quickstart_output() -> str:
    """The output README.rst shows for the quickstart: the first text block after `.. ci: quickstart`."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    after = text.index(".. ci: quickstart")
    block = next(
        b
        for b in rst_blocks(ROOT / "README.rst")
        if b.language == "text" and b.line > text[:after].count("\n")
    )
    return block.code


def test_the_quickstart_prints_what_the_readme_shows() -> None:
    """`python examples/quickstart.py` prints README.rst's shown output (durations within 0.05 s)."""
    done = subprocess.run(
        [sys.executable, "examples/quickstart.py"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    number = re.compile(r"\d+\.\d+")
    shown, printed = quickstart_output(), done.stdout
    assert number.sub("#", printed) == number.sub("#", shown), printed
    for got, want in zip(number.findall(printed), number.findall(shown)):
        assert abs(float(got) - float(want)) <= 0.05, printed
