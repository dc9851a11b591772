"""One worker's input partitions take turns, one batch's worth of records at a time.

Bytewax calls every due partition of a worker's source in one activation, in the
order of their names, and the flow's steps then run over all the batches read in
it together. Under a backlog of 8 partitions that was 16,000 records passing each
step at once, each alive as the consumed message, the parsed login and the encoded
output: the job's peak memory. With turns, the partitions called in one activation
read until together they have read ``SOURCE_BATCH_SIZE`` records (the budget), so
under a backlog one partition's full batch passes the steps at a time, as in the
fused loop; at a trickle every partition still reads in every activation, so the
steps do not run once per partition.

The rule, for the partitions called in one activation (``may_read``):

- a partition reads only while the partitions before it in this activation have
  read fewer records than the budget;
- after an activation that filled the budget at partition P, only partitions named
  after P may read in the next one (any partition, if P is the last of the
  worker's); after an activation that did not fill it, any partition may.

So under a backlog the turn goes round the partitions in name order and skips those
with nothing to read: a partition with records reads within one round of the
partitions (and an activation or two more), however busy the others are. A
partition refused its turn asks to be called again at once (``dataflow.source``).
A new activation is recognised by a partition called whose name is not after the
last one called.
"""

from __future__ import annotations


class Turns:
    """The turn among the partitions of one worker (they share one)."""

    def __init__(self, budget: int) -> None:
        self._budget = budget  # records per activation, over all the partitions
        self._names: set[str] = set()  # the worker's partitions still reading
        self._final = ""  # the last of their names
        self._last: str | None = None  # the partition called last
        self._after: str | None = None  # in this activation, only partitions after it read
        self._reader: str | None = None  # the partition that read last in this activation
        self._read = 0  # records read in this activation

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
            reader, filled = self._reader, self._read >= self._budget
            self._after = reader if filled and reader is not None and reader < self._final \
                else None
            self._reader, self._read = None, 0
        self._last = name
        return self._read < self._budget and (self._after is None or name > self._after)

    def read(self, name: str, records: int) -> None:
        """Partition ``name`` read ``records`` records."""
        self._reader = name
        self._read += records
