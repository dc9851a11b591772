"""One worker's input partitions read one at a time, taking turns.

Bytewax calls every due partition of a worker's source in one activation, in the
order of their names, and the flow's steps then run over all the batches read in
it together. With 8 partitions that is 16,000 records passing each step at once,
each alive as the consumed message, the parsed login and the encoded output: the
job's peak memory. Taking turns, each activation reads one partition's batch and
the steps run over that one, as the fused loop did, at the same batch size.

The rule, for the partitions called in one activation (``may_read``):

- a partition reads only if no other partition read in this activation;
- after an activation in which partition P read, only partitions named after P
  may read in the next one (any partition, if P is the last of the worker's); if
  none of them had records, the activation after that is open to every partition
  again.

So the turn goes round the partitions in name order and skips those with nothing
to read: a partition with records reads within one round of the partitions (and an
activation or two more), however busy the others are. A partition refused its turn
asks to be called again at once (``dataflow.source``). A new activation is
recognised by a partition called whose name is not after the last one called.
"""

from __future__ import annotations


class Turns:
    """The turn among the partitions of one worker (they share one)."""

    def __init__(self) -> None:
        self._names: set[str] = set()  # the worker's partitions still reading
        self._final = ""  # the last of their names
        self._last: str | None = None  # the partition called last
        self._after: str | None = None  # in this activation, only partitions after it read
        self._reader: str | None = None  # the partition that read in this activation

    def join(self, name: str) -> None:
        """Partition ``name`` takes part."""
        self._names.add(name)
        self._final = max(self._names)

    def leave(self, name: str) -> None:
        """Partition ``name`` reads no more (finished or stopped)."""
        self._names.discard(name)
        self._final = max(self._names, default="")

    def may_read(self, name: str) -> bool:
        """Whether partition ``name``, called now, may read."""
        if self._last is not None and name <= self._last:  # a new activation
            reader = self._reader
            self._after = None if reader is None or reader >= self._final else reader
            self._reader = None
        self._last = name
        return self._reader is None and (self._after is None or name > self._after)

    def read(self, name: str) -> None:
        """Partition ``name`` read records: the others wait for the next activation."""
        self._reader = name
