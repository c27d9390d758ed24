"""Checked by mypy --strict in tests/test_typing.py: each marked line must be an error."""

from __future__ import annotations

from limify import rate_limit


@rate_limit("10/minute", key="user_id")
def profile(user_id: int) -> str:
    """A sync endpoint."""
    return str(user_id)


profile("seven")  # E: arg-type
profile(7, extra=1)  # E: call-arg
profile.rate_limit.nothing()  # E: attr-defined
length: int = profile(7)  # E: assignment
