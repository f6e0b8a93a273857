"""A batch's commit: its writes and counters as one Lua script, counted once, by its latest taker.

Why one script: the writes, the check that no later start replaced the committing one, and the
counters must be atomic (so a redelivered batch is never counted twice and a superseded start
writes nothing), and on a cluster each round trip is a network latency paid per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = ["COMMIT_LUA", "WRITE_WORDS", "Writes", "Commit"]

# Commit a batch: its writes, then its counters only the first time its number enters the done
# set; none of it when the start committing is not the batch's latest (its taker was replaced).
# KEYS[1] done set, KEYS[2] counters hash, KEYS[3] takers hash; ARGV[1] batch no, ARGV[2] expiry,
# ARGV[3] the batch's takers field, ARGV[4] the committing start's taker ('' = any start may),
# ARGV[5] the number of writes, each as its word count and its words; then name, n pairs.
# A write spelled HSET? is an HSET that also returns (after added and the done count) the key
# and field of each pair the hash held already (get's check for two files sharing one entity
# and item: atomic, so of two batches writing one item at once exactly one hears of the other).
COMMIT_LUA = """
if ARGV[4] ~= '' then
  local now = redis.call('HGET', KEYS[3], ARGV[3])
  if now and string.sub(now, 1, #ARGV[4] + 1) ~= ARGV[4] .. '\t' then
    return {-1, now}
  end
end
local found = {}
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local n = tonumber(ARGV[i])
  if ARGV[i + 1] == 'HSET?' then
    for j = i + 3, i + n, 2 do
      if redis.call('HSET', ARGV[i + 2], ARGV[j], ARGV[j + 1]) == 0 then
        found[#found + 1] = ARGV[i + 2]
        found[#found + 1] = ARGV[j]
      end
    end
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
if added == 1 then
  for j = i, #ARGV, 2 do
    redis.call('HINCRBY', KEYS[2], ARGV[j], ARGV[j + 1])
  end
  redis.call('EXPIRE', KEYS[2], ARGV[2])
end
local out = {added, redis.call('SCARD', KEYS[1])}
for _, word in ipairs(found) do out[#out + 1] = word end
return out
"""

WRITE_WORDS = 1000
"""Field-value pairs per HSET a commit script runs (Lua's unpack takes a few thousand words)."""


class Writes:
    """Redis writes gathered for one commit script (:data:`COMMIT_LUA`) instead of sent: the
    few pipeline methods the store's record writers use, each kept as a command's words."""

    def __init__(self) -> None:
        self.ops: list[list[Any]] = []

    def hset(self, key: str, field: Any = None, value: Any = None,
             mapping: Mapping[Any, Any] | None = None) -> Writes:
        pairs = list((mapping or {}).items())
        if field is not None:
            pairs.append((field, value))
        return self._field_writes("HSET", key, pairs)

    def hset_saying_old(self, key: str, mapping: Mapping[Any, Any]) -> Writes:
        """HSET ``mapping`` into ``key``; the commit says which fields it held already."""
        return self._field_writes("HSET?", key, list(mapping.items()))

    def _field_writes(self, op: str, key: str, pairs: list[tuple[Any, Any]]) -> Writes:
        """``op key f v f v ...``, cut into writes of at most WRITE_WORDS fields each."""
        for start in range(0, len(pairs), WRITE_WORDS):
            words: list[Any] = [op, key]
            for f, v in pairs[start:start + WRITE_WORDS]:
                words += [f, v]
            self.ops.append(words)
        return self

    def hsetnx(self, key: str, field: Any, value: Any) -> Writes:
        self.ops.append(["HSETNX", key, field, value])
        return self

    def sadd(self, key: str, *members: Any) -> Writes:
        self.ops.append(["SADD", key, *members])
        return self

    def expire(self, key: str, seconds: int) -> Writes:
        self.ops.append(["EXPIRE", key, seconds])
        return self

    def words(self) -> list[Any]:
        """``[count, (len, words...)...]`` as :data:`COMMIT_LUA` reads them."""
        out: list[Any] = [len(self.ops)]
        for op in self.ops:
            out += [len(op), *op]
        return out


class Commit(NamedTuple):
    """What :meth:`RunStore.commit_batch` did, and what it learnt about the stage in the same
    round trip (so the last batch knows it is last without asking again)."""

    first: bool  # the batch's counters were committed now (not by an earlier delivery)
    done: int  # batches of the stage committed
    walk_done: bool
    n_batches: int | None
    superseded: str | None = None  # the taker whose later start replaced this one: nothing written
    existing: tuple[tuple[str, str], ...] = ()  # check_items: (entity, item) written before

    @property
    def complete(self) -> bool:
        """Every batch of the stage is committed and the walk is over."""
        return self.walk_done and self.n_batches is not None and self.done >= self.n_batches
