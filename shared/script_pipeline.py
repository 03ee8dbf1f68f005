"""Lua scripts and commands sent to Redis in one round trip.

redis-py's pipeline sends ``SCRIPT EXISTS`` for its scripts before every execute, so a pipeline
holding scripts costs two round trips. On a worker's online path that is a round trip per batch
in each of the claim and the settle, the serial loop that bounds how many requests a worker
answers per second. :class:`ScriptPipeline` sends ``EVALSHA`` straight away and loads a script
only when Redis answers ``NOSCRIPT`` (its script cache is empty after a restart, a failover or
``SCRIPT FLUSH``); a ``NOSCRIPT`` means the script did not run, so running it again is its
first run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from redis.client import Pipeline
from redis.commands.core import Script
from redis.exceptions import NoScriptError


class ScriptPipeline:
    """Queue scripts (:meth:`script`) and other commands (:meth:`command`), then
    :meth:`execute` them in order, in one round trip when Redis has the scripts cached.

    Not a transaction (``transaction=False``): each script is atomic on its own, as with
    ``Script.__call__``.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._client = client
        # Each entry: the script and its keys and args, or a function queueing a command.
        self._calls: list[tuple[Script, Sequence[Any], Sequence[Any]] | Callable[[Pipeline], Any]]
        self._calls = []

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> None:
        """Queue ``script`` (registered with ``register_script``) with ``keys`` and ``args``."""
        self._calls.append((script, keys, args))

    def command(self, queue: Callable[[Pipeline], Any]) -> None:
        """Queue the command(s) ``queue`` puts on the pipeline it is given, e.g.
        ``lambda pipe: pipe.hincrby(key, field, 1)``. Their replies are not returned."""
        self._calls.append(queue)

    def execute(self) -> list[Any]:
        """Run everything queued; the scripts' replies, in the order they were queued.

        Raises the first error Redis answered (redis.ResponseError for an error a script
        raised) and redis.RedisError when Redis cannot be reached.
        """
        replies = self._send(range(len(self._calls)))
        missing = [i for i, reply in replies.items() if isinstance(reply, NoScriptError)]
        if missing:
            sources = {call[0].script for i in missing if isinstance(call := self._calls[i], tuple)}
            for source in sources:
                self._client.script_load(source)
            replies.update(self._send(missing))
        for reply in replies.values():
            if isinstance(reply, Exception):
                raise reply
        return [replies[i] for i, call in enumerate(self._calls) if isinstance(call, tuple)]

    def _send(self, indexes: Sequence[int]) -> dict[int, Any]:
        """Send the calls at ``indexes`` in one pipeline; each script's reply or error by
        index (commands' replies are left out)."""
        with self._client.pipeline(transaction=False) as pipe:
            order: list[int | None] = []
            for index in indexes:
                call = self._calls[index]
                if isinstance(call, tuple):
                    script, keys, args = call
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                    order.append(index)
                else:
                    before = len(pipe.command_stack)
                    call(pipe)
                    order.extend([None] * (len(pipe.command_stack) - before))
            replies = pipe.execute(raise_on_error=False)
        out: dict[int, Any] = {}
        for at, reply in zip(order, replies, strict=True):
            if at is not None:
                out[at] = reply
            elif isinstance(reply, Exception):
                raise reply
        return out
