"""Coalescing concurrent async script calls into pipelined EVALSHA batches.

With many tasks checking limits at once on one ``redis.asyncio`` client, one
EVALSHA per check makes every check wait for its own round trip (and hold its
own connection). A :class:`ScriptBatcher` keeps at most one round trip in
flight per client: a call made while the client is idle goes out at once, on
its own; calls made while a round trip is in flight queue up and leave
together, as one pipeline of EVALSHAs, as soon as it returns. The batcher sends
through the adapter's at-most-once sender (:mod:`limify.core.redis_sending`),
so a pipeline whose replies were lost is never sent again either.

Every EVALSHA in the pipeline is still its own atomic script run: the server
executes them one after another, each seeing the state the previous one left.
Decisions are exactly those of separate calls in the same order; only the
round trips are shared. Pipelines are not transactions (``transaction=False``):
no MULTI/EXEC is needed, since no decision spans two scripts.

Cancellation and failures
-------------------------
A queued call whose caller is cancelled is dropped before the next pipeline is
built: it was never sent, so it spends nothing. A call already sent runs on the
server whatever happens to its caller (giving back what it took, such as a
concurrency lease, is the caller's business).

When a round trip fails because the server cannot be reached (``unreachable``),
the calls queued behind it fail at once with the same error instead of being
sent: they would only wait for a timeout of their own, after the one they
already waited for, and the failure policy answers them meanwhile.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


__all__ = ["ScriptBatcher", "MAX_BATCH", "Command"]

#: Most calls sent in one pipeline; more wait for the next round trip.
MAX_BATCH = 512

#: One command as the sender takes it: ``("EVALSHA", sha, num_keys, *keys, *argv)``.
Command = tuple[Any, ...]
#: ``send(commands) -> replies``, one round trip; error replies come back in place.
Send = Callable[[Sequence[Command]], Awaitable[list[Any]]]
_Queued = tuple[Command, "asyncio.Future[Any]"]


def _never(error: BaseException) -> bool:
    return False


class ScriptBatcher:
    """One client's queue of script calls (see the module docs); asyncio only.

    Args:
        send: the sender's ``run``: a list of commands in one round trip, sent once.
        recover: ``(error, command) -> awaitable`` answering one queued call whose
            reply was an error (the adapter answers NOSCRIPT by sending the source,
            and raises anything else).
        unreachable: ``(error) -> bool``, true when a failed round trip means the
            server cannot be reached; the queued calls then fail with that error
            instead of being sent. By default no error does.
    """

    def __init__(
        self,
        send: Send,
        recover: Callable[[BaseException, Command], Awaitable[Any]],
        unreachable: Callable[[BaseException], bool] = _never,
    ) -> None:
        self._send_commands = send
        self._recover = recover
        self._unreachable = unreachable
        self._queue: list[_Queued] = []
        self._busy = False
        #: Pipelines sent and the calls they carried, for monitoring.
        self.pipelines = 0
        self.batched_calls = 0

    def call(self, command: Command) -> Awaitable[Any]:
        """Send ``command`` alone when the client is idle, else in the next pipeline; await its reply.

        An error reply is raised (the caller recovers NOSCRIPT itself). A queued call
        is awaited as its future itself, with no coroutine of its own: under load most
        calls are queued, and each one in flight keeps only its future alive.
        """
        if not self._busy:
            self._busy = True
            return self._alone(command)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        return future

    async def _alone(self, command: Command) -> Any:
        failure: Exception | None = None
        try:
            reply = (await self._send_commands((command,)))[0]
        except Exception as error:
            failure = error
            raise
        finally:
            self._release(failure)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def _release(self, failure: Exception | None) -> None:
        """The round trip in flight ended (with ``failure``, if it failed): serve the queue."""
        if failure is not None and self._unreachable(failure):
            self._fail_queue(failure)
        if self._queue:
            asyncio.get_running_loop().create_task(self._drain())
        else:
            self._busy = False

    def _fail_queue(self, error: Exception) -> None:
        queue, self._queue = self._queue, []
        for _, future in queue:
            if not future.done():
                future.set_exception(error)

    async def _drain(self) -> None:
        try:
            while self._queue:
                # Calls cancelled while queued were never sent: drop them.
                live = [queued for queued in self._queue if not queued[1].done()]
                batch, self._queue = live[:MAX_BATCH], live[MAX_BATCH:]
                if batch:
                    await self._send(batch)
        finally:
            self._busy = False
            if self._queue:  # a failure above left callers waiting: serve them too
                self._busy = True
                asyncio.get_running_loop().create_task(self._drain())

    async def _send(self, batch: list[_Queued]) -> None:
        self.pipelines += 1
        self.batched_calls += len(batch)
        try:
            replies = await self._send_commands([command for command, _ in batch])
        except Exception as error:  # the round trip itself failed: every call in it did
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            if self._unreachable(error):
                self._fail_queue(error)
            return
        for (command, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled; the script ran all the same
                continue
            if isinstance(reply, BaseException):
                try:
                    reply = await self._recover(reply, command)
                except Exception as error:
                    if not future.done():
                        future.set_exception(error)
                    continue
                if future.done():  # its caller was cancelled during the recovery
                    continue
            future.set_result(reply)
