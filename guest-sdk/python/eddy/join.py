"""Joins over stores: plain library code, so their state survives restarts, savepoints
and hot upgrades like any other.

A stream-table join keeps the table in a store, the latest value per key (a record with
an empty value deletes its key, as a tombstone in a compacted topic), and looks each
stream event's key up in it. As in Kafka Streams, a table update changes what later
stream events find, never what earlier ones found::

    from eddy.join import TableJoin

    class Enrich(eddy.Operator):
        def init(self, config):
            self.customers = TableJoin("customers", config.string("join", "inner"))

        def process(self, event, ctx):
            if event.input() == "customers":
                self.customers.update(ctx, event)
                return
            found = self.customers.join(ctx, event)
            if found is not None:  # None: an inner join drops the order
                ctx.emit(eddy.Event(event.key, event.value + b"|" + (found.row or b"null")))
"""

from typing import NamedTuple, Optional

from ._api import BadInput, Context, Event, Fatal

KINDS = ("inner", "left")


class Lookup(NamedTuple):
    """What a stream event found: the key's latest row, or ``None`` (a left join's event
    without a match)."""

    row: Optional[bytes]


class TableJoin:
    """A stream-table join whose table lives in the store ``store``; ``kind`` is
    ``"inner"`` (only events whose key has a row) or ``"left"`` (every event)."""

    def __init__(self, store: str, kind: str = "inner"):
        if kind not in KINDS:
            raise Fatal(f"join kind {kind!r}: expected 'inner' or 'left'")
        self.store = store
        self.kind = kind

    def update(self, ctx: Context, event: Event) -> None:
        """Applies a record of the table input: its value becomes the key's row; an
        empty value deletes it. A keyless record is refused (``BadInput``)."""
        if event.key is None:
            raise BadInput(f"a record of table {self.store!r} has no key")
        table = ctx.store(self.store)
        if event.value:
            table.set(event.key, event.value)
        else:
            table.delete(event.key)

    def join(self, ctx: Context, event: Event) -> Optional[Lookup]:
        """The row a stream event joins with: ``None`` when an inner join drops the event
        (no row, or no key), else a ``Lookup``."""
        row = None if event.key is None else self.row(ctx, event.key)
        if row is None and self.kind == "inner":
            return None
        return Lookup(row)

    def row(self, ctx: Context, key) -> Optional[bytes]:
        """The table's current row under ``key``."""
        return ctx.store(self.store).get(key)
