"""Sliding log: the exact count of what was admitted during the last period.

Theory of operation
-------------------
State per key: the log of admitted calls, one entry ``(stamp_us, cum, cost)``
per call, oldest first. ``cum`` is the running total of cost through that entry,
so the cost of any run of consecutive entries is a difference of two ``cum``
values and never needs a sum. A key never seen has an empty log.

An entry is live at ``now`` while ``stamp > now - period``. With
``used = cost of the live entries``, a call of cost ``c`` is admitted when
``used + c <= limit``; it appends ``(max(now, newest stamp), newest cum + c,
c)`` and drops the entries that are no longer live. A refused call changes
nothing.

Live entries are every entry stamped after ``now - period``, including those
stamped *later* than ``now``: in client-clock mode a caller whose clock runs
behind the others must still see their calls, or it admits more than
``limit``. For the same reason a new entry is never stamped before the newest
one, which keeps stamps and ``cum`` increasing together along the log.

* ``remaining = limit - used - c`` after an admitted call;
* ``retry_us``: the oldest live entries age out first; it is the time when the
  first entry whose ``cum`` covers the excess ``used + c - limit`` leaves the
  window (``stamp + period - now``). Exact: one microsecond earlier it has not;
* ``reset_us`` (and the TTL) is when the newest entry ages out, after which the
  log is empty;
* a refund that names its call (by the token it was admitted with) removes
  that call's own entry and lowers the ``cum`` of every newer entry by its
  cost: taking the newest entries instead would keep the refunded call's
  older stamp in the log and drop a newer one, so the window would later
  admit more than ``limit`` among the calls that really ran. A call no longer
  live has nothing to give back. A refund naming no call takes ``c`` off the
  newest live entries (whole entries from the top, then part of one).

Invariant: over any window of one period the admitted cost is at most
``limit``, and a call is refused only when admitting it would break that.

Memory. A key holds one entry per call admitted in the last period, so up to
``limit`` entries; :data:`MAX_LOG_LIMIT` bounds it (larger limits are refused
when the plan is set, pointing to the sliding window, whose state is O(1)).

Cost of one call. The log is never read whole. Live-ness is a binary search
over stamps and ``used`` a difference of two ``cum`` values, so a call is
O(log n); ``retry_us`` is a second binary search, over ``cum``. Admitted calls
append one entry and drop the expired ones (amortised O(1) each). On Redis the
log is one sorted set: score = stamp, member ``"<cum, 16 digits>:<cost>[:<token>]"``
(unique, since ``cum`` strictly increases, and in ``cum`` order among equal
stamps, however many calls share a microsecond); the script reads it with
``ZRANGE``/``ZRANGEBYSCORE``/``ZCOUNT`` and writes only the changes. In memory
the entries sit in an append-only list shared by successive states (see
:func:`_append`). ``cum`` is rebased to start from zero again before it could
reach 2**53, where doubles (Lua's numbers) stop being exact.
"""

from __future__ import annotations

import operator
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from limify.core.algorithms.base import AlgorithmSpec, StepTuple, admission_of, period_bound
from limify.core.algorithms.codecs import Member, ZsetCodec
from limify.core.algorithms.shells import AsyncAlgorithm, SyncAlgorithm
from limify.core.plan import Plan

__all__ = [
    "transition",
    "refund",
    "REBASE_AT",
    "MAX_LOG_LIMIT",
    "SLIDING_LOG",
    "SlidingLogAlgorithm",
    "AsyncSlidingLogAlgorithm",
]

#: ``(stamp_us, cum, cost, token)``: one admitted call and the token it ran with.
Entry = tuple[int, int, int, str]
#: ``(entries, start, end)``: the log is ``entries[start:end]``. Positions below
#: ``end`` are never changed, so states may share one list (see :func:`_append`).
State = tuple[list[Entry], int, int]

#: A ``cum`` above this is rebased (twin of ``REBASE_AT`` in the Lua; 2**50).
REBASE_AT = 1_125_899_906_842_624
#: Dead entries kept at the front of a shared list before it is compacted.
_COMPACT_AFTER = 64

_stamp = operator.itemgetter(0)
_cum = operator.itemgetter(1)


def _append(entries: list[Entry], start: int, end: int, entry: Entry) -> State:
    """The log ``entries[start:end] + [entry]``, sharing ``entries`` when it can.

    Appending to a list is atomic; only the state that ends where the list ends
    can claim the new slot, and it checks the slot holds its entry. Any other
    state (an older one, one whose successor was computed and discarded, or one
    racing another thread) gets a copy. So no state ever sees its entries change.
    """
    if end - start < start and start > _COMPACT_AFTER:
        fresh = entries[start:end]  # mostly dead: compact (amortised over the dropped entries)
        fresh.append(entry)
        return fresh, 0, len(fresh)
    if end == len(entries):
        entries.append(entry)
        if entries[end] is entry:
            return entries, start, end + 1
    fresh = entries[start:end]
    fresh.append(entry)
    return fresh, 0, len(fresh)


def _first_live(entries: list[Entry], start: int, end: int, floor: int) -> int:
    """Index of the first entry stamped after ``floor`` (``end`` if none)."""
    if start == end or entries[end - 1][0] <= floor:
        return end
    return bisect_right(entries, floor, start, end, key=_stamp)


def transition(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> StepTuple:
    """The sliding log transition (twin of ``sliding_log.lua``)."""
    limit = plan.limit
    period = plan.period_us
    floor = now - period
    entries, start, end = state if state is not None else ([], 0, 0)
    live = _first_live(entries, start, end, floor)
    newest_cum = entries[end - 1][1] if end > start else 0
    base = newest_cum  # cum before the first live entry
    if live < end:
        _, first_cum, first_cost, _ = entries[live]
        base = first_cum - first_cost
    used = newest_cum - base
    if used <= limit - cost:
        stamp = max(now, entries[end - 1][0]) if end > start else now
        cum = newest_cum + cost
        if cum > REBASE_AT:
            # Rebase so the first live entry starts from zero; O(n) once per 2**50 units.
            rebased = [(s, c - base, k, t) for s, c, k, t in entries[live:end]]
            rebased.append((stamp, cum - base, cost, token))
            new_state: State = (rebased, 0, len(rebased))
        else:
            new_state = _append(entries, live, end, (stamp, cum, cost, token))
        reset = stamp + period - now
        return (True, limit - used - cost, reset, 0, new_state, reset)
    # Refused: used > limit - cost >= 0, so the live part is not empty.
    oldest_needed = bisect_left(entries, base + used + cost - limit, live, end, key=_cum)
    retry = entries[oldest_needed][0] + period - now
    reset = entries[end - 1][0] + period - now
    return (False, max(0, limit - used), reset, retry, state, reset)  # used > limit if the limit shrank


def _take_call(kept: list[Entry], call_token: str, cost: int) -> None:
    """Take ``cost`` off the newest entry of ``call_token``; newer entries' ``cum`` follow."""
    for index in range(len(kept) - 1, -1, -1):
        stamp, cum, spent, owner = kept[index]
        if owner != call_token:
            continue
        take = min(cost, spent)
        if take < spent:
            kept[index] = (stamp, cum - take, spent - take, owner)
            index += 1
        else:
            del kept[index]
        kept[index:] = [(s, c - take, k, t) for s, c, k, t in kept[index:]]
        return


def _take_newest(kept: list[Entry], cost: int) -> None:
    """Take ``cost`` off the newest entries: whole entries from the top, then part of one."""
    left = cost
    while left > 0 and kept:
        stamp, cum, spent, owner = kept[-1]
        if spent <= left:
            kept.pop()
            left -= spent
        else:
            kept[-1] = (stamp, cum - left, spent - left, owner)
            left = 0


def refund(state: State | None, now: int, plan: Plan, cost: int, token: str = "") -> tuple[State | None, int]:
    """Give back the cost of the call ``token`` names (twin of ``refund`` in the Lua).

    A refund token (:func:`~limify.core.algorithms.base.refund_token`), or a plain
    token the call was admitted with, removes that call's own entry, wherever it
    lies in the window; a call no longer live has nothing to give back. Without a
    token, ``cost`` comes off the newest live entries.
    """
    if state is None:
        return None, 0
    period = plan.period_us
    entries, start, end = state
    kept = entries[_first_live(entries, start, end, now - period) : end]
    _, call_token = admission_of(token)
    if call_token:
        _take_call(kept, call_token, cost)
    else:
        _take_newest(kept, cost)
    if not kept:
        return None, 0
    return (kept, 0, len(kept)), kept[-1][0] + period - now


#: Largest limit of a sliding log: a key holds up to ``limit`` entries (one per call
#: admitted in the last period), about 150 bytes each in process and 100 on Redis.
MAX_LOG_LIMIT = 10_000


def _member(cum: int, cost: int, token: str) -> str:
    """An entry's member on Redis (twin of ``encode`` in the Lua)."""
    return f"{cum:016d}:{cost}:{token}" if token else f"{cum:016d}:{cost}"


def _to_members(state: State) -> list[Member]:
    entries, start, end = state
    return [(stamp, _member(cum, cost, token)) for stamp, cum, cost, token in entries[start:end]]


def _from_members(members: Sequence[Member]) -> State:
    entries: list[Entry] = []
    for stamp, member in members:
        cum, _, rest = member.partition(":")
        cost, _, token = rest.partition(":")
        entries.append((int(stamp), int(cum), int(cost), token))
    return entries, 0, len(entries)


SLIDING_LOG = AlgorithmSpec(
    "sliding_log",
    transition,
    refund,
    "sliding_log.lua",
    ZsetCodec(_to_members, _from_members),
    admitted_bound=period_bound,
    max_limit=MAX_LOG_LIMIT,
    max_limit_hint=(
        ": its state keeps one entry per admitted call, so memory per key grows with the "
        "limit; use algorithm='sliding_window' (two counters per key) for larger limits"
    ),
)


class SlidingLogAlgorithm(SyncAlgorithm):
    """Sliding log on a synchronous storage adapter (memory or Redis)."""

    spec = SLIDING_LOG


class AsyncSlidingLogAlgorithm(AsyncAlgorithm):
    """Sliding log on an asynchronous storage adapter (memory or redis.asyncio)."""

    spec = SLIDING_LOG
