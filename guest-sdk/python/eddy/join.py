"""Joins over stores (a stream-table join, ``TableJoin``, and a windowed stream-stream
join, ``WindowJoin``): plain library code, so their state survives restarts, savepoints
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

import struct
from typing import List, NamedTuple, Optional

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


# ---- Windowed stream-stream joins ------------------------------------------------------

_KINDS_WINDOW = ("inner", "left", "outer")
_TIMER_TAG = b"\0wjoin\0"


class Joined(NamedTuple):
    """One record of a side, as a windowed join keeps it."""

    value: bytes
    timestamp: int


class Pair(NamedTuple):
    """What a windowed join emits: a left and a right record that met, or (left and outer
    joins) a record that met none, its other side ``None``."""

    key: bytes
    left: Optional[Joined]
    right: Optional[Joined]


_I64_MIN, _I64_MAX = -(2**63), 2**63 - 1


def _sat(v: int) -> int:
    """``v`` within the 64-bit range (times saturate there, as in the Rust SDK)."""
    return max(_I64_MIN, min(_I64_MAX, v))


def _key_prefix(key: bytes) -> bytes:
    return struct.pack(">I", len(key)) + key


def _entry_key(prefix: bytes, at: int) -> bytes:
    return prefix + struct.pack(">Q", (at & 0xFFFFFFFFFFFFFFFF) ^ (1 << 63))


def _entry_time(entry: bytes) -> int:
    v = struct.unpack(">Q", entry[-8:])[0] ^ (1 << 63)
    return v - (1 << 64) if v >= 1 << 63 else v


def _encode(records) -> bytes:
    return b"".join(bytes([1 if met else 0]) + struct.pack(">I", len(v)) + v for met, v in records)


def _decode(b: bytes, name: str):
    out, i = [], 0
    while i < len(b):
        if i + 5 > len(b):
            raise Fatal(f"join {name}: a stored record is damaged")
        (n,) = struct.unpack(">I", b[i + 1 : i + 5])
        if i + 5 + n > len(b):
            raise Fatal(f"join {name}: a stored record is damaged")
        out.append([b[i] != 0, bytes(b[i + 5 : i + 5 + n])])
        i += 5 + n
    return out


class WindowJoin:
    """A windowed stream-stream join, as Kafka Streams' KStream-KStream join: a right
    record at ``r`` meets a left record of the same key at ``l`` when
    ``l - before <= r <= l + after`` (both ``window`` unless given). ``kind``: ``"inner"``
    (only pairs), ``"left"`` (and left records that met none, when their window closes) or
    ``"outer"`` (and records of either side that met none). Records wait in the stores
    ``<name>.left`` and ``<name>.right`` (the Rust SDK's layout) until the watermark passes
    their window and ``grace``."""

    def __init__(self, name: str, window: int, kind: str = "inner", before=None, after=None, grace: int = 0):
        if kind not in _KINDS_WINDOW:
            raise Fatal(f"join kind {kind!r}: expected 'inner', 'left' or 'outer'")
        self.name = name
        self.kind = kind
        self.before = max(0, window if before is None else before)
        self.after = max(0, window if after is None else after)
        self.grace = max(0, grace)
        self._tag = _TIMER_TAG + name.encode() + b"\0"

    def add(self, ctx: Context, side: str, event: Event) -> List[Pair]:
        """Adds a record of ``side`` (``"left"`` or ``"right"``) and returns the pairs it
        makes with the other side's waiting records, in their time order."""
        if side not in ("left", "right"):
            raise Fatal(f"join {self.name}: side {side!r} is neither 'left' nor 'right'")
        if event.key is None:
            raise BadInput(f"join {self.name}: a record has no key")
        key, t = bytes(event.key), event.timestamp
        if side == "left":
            lo, hi = _sat(t - self.before), _sat(t + self.after)
        else:
            lo, hi = _sat(t - self.after), _sat(t + self.before)
        other = ctx.store(f"{self.name}.{'right' if side == 'left' else 'left'}")
        prefix = _key_prefix(key)
        mine = Joined(bytes(event.value), t)
        pairs = []
        # Just past the key of time `hi` (the keys of one time have no suffix).
        for k, v in list(other.scan(_entry_key(prefix, lo), _entry_key(prefix, hi) + b"\0")):
            records = _decode(v, self.name)
            at = _entry_time(k)
            for r in records:
                r[0] = True
                theirs = Joined(r[1], at)
                pairs.append(Pair(key, mine, theirs) if side == "left" else Pair(key, theirs, mine))
            if self.kind != "inner":
                other.set(k, _encode(records))
        store = ctx.store(f"{self.name}.{side}")
        entry = _entry_key(prefix, t)
        held = store.get(entry)
        records = _decode(held, self.name) if held is not None else []
        records.append([bool(pairs), bytes(event.value)])
        store.set(entry, _encode(records))
        closes = _sat(t + (self.after if side == "left" else self.before))
        ctx.set_timer(self._tag + (b"l" if side == "left" else b"r") + entry, _sat(closes + self.grace + 1))
        return pairs

    def on_timer(self, ctx: Context, key: bytes) -> Optional[List[Pair]]:
        """Call from ``on_timer``: for one of this join's timers, drops the records whose
        window closed and returns those that met none (left and outer joins); ``None`` for
        another timer."""
        key = bytes(key)
        if not key.startswith(self._tag):
            return None
        side = {ord("l"): "left", ord("r"): "right"}.get(key[len(self._tag)]) if len(key) > len(self._tag) else None
        entry = key[len(self._tag) + 1 :]
        if side is None or len(entry) < 12 or 12 + struct.unpack(">I", entry[:4])[0] != len(entry):
            raise Fatal(f"join {self.name}: timer key {key!r} is not its own")
        store = ctx.store(f"{self.name}.{side}")
        held = store.get(entry)
        if held is None:
            return []
        store.delete(entry)
        if not (self.kind == "outer" or (self.kind == "left" and side == "left")):
            return []
        (n,) = struct.unpack(">I", entry[:4])
        user_key, at = entry[4 : 4 + n], _entry_time(entry)
        out = []
        for met, value in _decode(held, self.name):
            if not met:
                alone = Joined(value, at)
                out.append(Pair(user_key, alone, None) if side == "left" else Pair(user_key, None, alone))
        return out
