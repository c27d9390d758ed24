"""The signatures README.rst shows are the real ones: every parameter, in order, with its default."""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from limify import Limify, Rule, rate_limit
from limify.adapters.django import limit_view
from limify.adapters.fastapi.middleware import LimifyMiddleware
from tests.children import ROOT

SHOWN: list[tuple[str, Callable[..., Any]]] = [
    ("rate_limit", rate_limit),
    ("Rule", Rule),
    ("Limify", Limify),
    ("LimifyMiddleware", LimifyMiddleware),
    ("limit_view", limit_view),
]


def rendered(function: Callable[..., Any]) -> str:
    """The signature as the README writes it: no annotations, strings in double quotes."""
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


@pytest.mark.parametrize(("name", "function"), SHOWN, ids=[name for name, _ in SHOWN])
def test_the_readme_shows_the_real_signature(name: str, function: Callable[..., Any]) -> None:
    """README.rst's ``name(...)`` lists exactly the parameters and defaults the code has."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    match = re.search(rf"``{name}\((.*?)\)``", text, flags=re.DOTALL)
    assert match is not None, f"README.rst shows no ``{name}(...)`` signature"
    assert " ".join(match.group(1).split()) == rendered(function)
