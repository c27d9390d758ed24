"""The signatures the documentation shows are the real ones: every parameter, in order, with its default.

README.rst is a short front page; the signatures live on the pages of the site (docs/), each
on the page that documents the callable, as inline code: ``name(...)`` in reStructuredText,
`` `name(...)` `` in Markdown.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from limify import Limify, Rule, rate_limit
from limify.adapters.django import limit_view
from limify.adapters.fastapi.middleware import LimifyMiddleware
from tests.children import ROOT

#: Name, callable, and the page that shows its signature.
SHOWN: list[tuple[str, Callable[..., Any], str]] = [
    ("rate_limit", rate_limit, "docs/decorator.md"),
    ("Rule", Rule, "docs/web/index.md"),
    ("Limify", Limify, "docs/web/index.md"),
    ("LimifyMiddleware", LimifyMiddleware, "docs/web/fastapi.md"),
    ("limit_view", limit_view, "docs/web/django.md"),
]


def rendered(function: Callable[..., Any]) -> str:
    """The signature as the documentation writes it: no annotations, strings in double quotes."""
    parts, keyword_only = [], False
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is parameter.VAR_POSITIONAL:
            parts.append(f"*{parameter.name}")
            keyword_only = True
        elif parameter.kind is parameter.VAR_KEYWORD:
            parts.append(f"**{parameter.name}")
        else:
            if parameter.kind is parameter.KEYWORD_ONLY and not keyword_only:
                parts.append("*")
                keyword_only = True
            default = parameter.default
            if default is parameter.empty:
                parts.append(parameter.name)
            else:
                shown = json.dumps(default) if isinstance(default, str) else repr(default)
                parts.append(f"{parameter.name}={shown}")
    return ", ".join(parts)


def shown_signature(document: str, name: str, root: Path = ROOT) -> str | None:
    """The parameters ``document`` shows for ``name(...)`` in inline code, whitespace collapsed."""
    text = (root / document).read_text(encoding="utf-8")
    ticks = "``" if document.endswith(".rst") else "`"
    match = re.search(rf"(?<!`){ticks}{name}\((.*?)\){ticks}(?!`)", text, flags=re.DOTALL)
    return None if match is None else " ".join(match.group(1).split())


@pytest.mark.parametrize(("name", "function", "document"), SHOWN, ids=[name for name, _, _ in SHOWN])
def test_the_docs_show_the_real_signature(name: str, function: Callable[..., Any], document: str) -> None:
    """The page documenting ``name`` shows exactly the parameters and defaults the code has."""
    shown = shown_signature(document, name)
    assert shown is not None, f"{document} shows no `{name}(...)` signature"
    assert shown == rendered(function)


def test_a_signature_missing_a_parameter_is_caught(tmp_path: Path) -> None:
    """A page whose signature lost a parameter no longer matches the code: the check reads the page."""
    page = (ROOT / "docs" / "decorator.md").read_text(encoding="utf-8")
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "decorator.md").write_text(
        page.replace(", cache_refusals=True", ""), encoding="utf-8"
    )
    assert shown_signature("docs/decorator.md", "rate_limit") == rendered(rate_limit)
    assert shown_signature("docs/decorator.md", "rate_limit", root=tmp_path) != rendered(rate_limit)
