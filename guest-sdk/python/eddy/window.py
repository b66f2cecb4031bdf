"""Event-time windows over a store and timers: tumbling, sliding and session windows per
event key, as in the Rust SDK's ``eddy_guest::window`` (same store layout and timers, so
the two produce the same results)::

    from eddy.window import Windows, COUNT

    class PerMinute(eddy.Operator):
        def init(self, config):
            self.windows = Windows.tumbling(60_000)

        def process(self, event, ctx):
            self.windows.add(ctx, event, COUNT)

        def on_timer(self, key, at, ctx):
            for w in self.windows.on_timer(ctx, key, at):
                ctx.emit(eddy.Event(w.key, str(COUNT.value(w.acc))).at(w.end - 1))

A window ``[start, end)`` closes once the watermark reaches ``end``. With
``allowed_lateness(ms)`` a closed window is kept that much longer and a late event
re-emits it (``update`` set); later events are dropped (``Added.dropped``).
``add`` returns the running accumulators of the event's windows too (``Added.windows``).
"""

import json
import struct
from typing import List, Optional

from ._api import Error, Fatal


class Aggregate:
    """How a window's events fold into its accumulator (bytes, kept in the store).
    Subclass it for other aggregates than ``COUNT``; ``acc_int``, ``int_acc``,
    ``acc_float``, ``float_acc``, ``acc_json`` and ``json_acc`` convert accumulators."""

    def add(self, acc: Optional[bytes], event) -> bytes:
        """The accumulator after ``event`` (an ``eddy.Event``); ``acc`` is ``None`` for
        the window's first event (or the merged accumulator of sessions it joined)."""
        raise NotImplementedError

    def merge(self, a: bytes, b: bytes) -> bytes:
        """One accumulator of two (sessions that an event joined into one)."""
        raise NotImplementedError


def acc_int(acc: Optional[bytes]) -> int:
    """An 8-byte little-endian integer accumulator (0 for ``None``)."""
    return struct.unpack("<q", acc)[0] if acc is not None and len(acc) == 8 else 0


def int_acc(n: int) -> bytes:
    return struct.pack("<q", n)


def acc_float(acc: Optional[bytes]) -> float:
    """An 8-byte little-endian float accumulator (0.0 for ``None``)."""
    return struct.unpack("<d", acc)[0] if acc is not None and len(acc) == 8 else 0.0


def float_acc(x: float) -> bytes:
    return struct.pack("<d", x)


def acc_json(acc: Optional[bytes]):
    """A JSON accumulator (``None`` for ``None``)."""
    return None if acc is None else json.loads(acc)


def json_acc(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


class Count(Aggregate):
    """Counts events; the accumulator is an 8-byte little-endian integer."""

    @staticmethod
    def value(acc: bytes) -> int:
        return struct.unpack("<q", acc)[0] if len(acc) == 8 else 0

    def add(self, acc, event):
        return struct.pack("<q", (Count.value(acc) if acc is not None else 0) + 1)

    def merge(self, a, b):
        return struct.pack("<q", Count.value(a) + Count.value(b))


COUNT = Count()


class Closed:
    """A window's result: the event key, ``[start, end)`` and its accumulator."""

    __slots__ = ("key", "start", "end", "acc", "update")

    def __init__(self, key, start, end, acc, update):
        self.key, self.start, self.end, self.acc, self.update = key, start, end, acc, update


class Added:
    """What ``Windows.add`` did: ``windows``, every window the event went into with its
    running accumulator (``COUNT.value(w.acc)`` is the count so far); ``updates``, the
    re-emitted results of closed windows; and ``dropped``, whether the event came too late
    for every window it belongs to."""

    __slots__ = ("windows", "updates", "dropped")

    def __init__(self):
        self.windows: List[Closed] = []
        self.updates: List[Closed] = []
        self.dropped = False


_FLIP = 1 << 63


def _prefix(key: bytes) -> bytes:
    return struct.pack(">I", len(key)) + key


def _entry_key(key: bytes, start: int) -> bytes:
    return _prefix(key) + struct.pack(">Q", (start & 0xFFFFFFFFFFFFFFFF) ^ _FLIP)


def _split_entry_key(k: bytes):
    if len(k) < 4:
        return None
    n = struct.unpack(">I", k[:4])[0]
    if len(k) != 4 + n + 8:
        return None
    raw = struct.unpack(">Q", k[4 + n :])[0] ^ _FLIP
    start = raw - (1 << 64) if raw >= _FLIP else raw
    return k[4 : 4 + n], start


def _encode(end: int, closed: bool, acc: bytes) -> bytes:
    return struct.pack("<q", end) + (b"\x01" if closed else b"\x00") + acc


def _decode(v: bytes):
    if len(v) < 9:
        raise Fatal(f"window store: an entry of {len(v)} bytes is not a window")
    return struct.unpack("<q", v[:8])[0], v[8] != 0, v[9:]


class Windows:
    """Windows of one kind over a store (``windows`` unless ``store(name)`` says)."""

    def __init__(self, kind, size=0, slide=0, gap=0):
        self._kind, self._size, self._slide, self._gap = kind, size, slide, gap
        self._lateness = 0
        self._store = "windows"

    @staticmethod
    def tumbling(size: int) -> "Windows":
        return Windows("tumbling", size=max(size, 1), slide=max(size, 1))

    @staticmethod
    def sliding(size: int, slide: int) -> "Windows":
        return Windows("sliding", size=max(size, 1), slide=max(slide, 1))

    @staticmethod
    def session(gap: int) -> "Windows":
        return Windows("session", gap=max(gap, 1))

    def allowed_lateness(self, ms: int) -> "Windows":
        self._lateness = max(ms, 0)
        return self

    def store(self, name: str) -> "Windows":
        self._store = name
        return self

    def add(self, ctx, event, agg: Aggregate) -> Added:
        """Puts ``event`` (by its key and timestamp) into its windows, arming timers."""
        store = ctx.store(self._store)
        key = event.key or b""
        ts = event.timestamp
        watermark = ctx.watermark()
        added = Added()
        if self._kind == "session":
            if ts + self._gap + self._lateness <= watermark:
                added.dropped = True
                return added
            windows = [self._session_for(ctx, key, ts, agg)]
        else:
            windows = []
            start = ts // self._slide * self._slide
            while start > ts - self._size:
                windows.append((start, start + self._size, None))
                start -= self._slide
        any_window = False
        for start, end, merged in windows:
            if end + self._lateness <= watermark:
                continue
            any_window = True
            wid = _entry_key(key, start)
            previous = store.get(wid)
            closed = False
            if previous is not None:
                _, closed, prev_acc = _decode(previous)
                acc = agg.add(merged if merged is not None else prev_acc, event)
            else:
                acc = agg.add(merged, event)
            store.set(wid, _encode(end, closed, acc))
            added.windows.append(Closed(key, start, end, acc, closed))
            if closed:
                added.updates.append(Closed(key, start, end, acc, True))
                ctx.set_timer(wid, end + self._lateness)
            else:
                ctx.set_timer(wid, end)
        added.dropped = not any_window
        return added

    def on_timer(self, ctx, key: bytes, at: int) -> List[Closed]:
        """The results of windows closing at this timer (others' timers are ignored)."""
        split = _split_entry_key(key)
        if split is None:
            return []
        event_key, start = split
        store = ctx.store(self._store)
        value = store.get(key)
        if value is None:
            return []
        end, closed, acc = _decode(value)
        if closed:
            if at >= end + self._lateness:
                store.delete(key)
            return []
        if at < end:
            return []
        if self._lateness > 0:
            store.set(key, _encode(end, True, acc))
            ctx.set_timer(key, end + self._lateness)
        else:
            store.delete(key)
        return [Closed(event_key, start, end, acc, False)]

    def _session_for(self, ctx, key, ts, agg):
        store = ctx.store(self._store)
        start, end = ts, ts + self._gap
        parts = {}
        while True:
            before = (start, end)
            for wid, value in store.scan_prefix(_prefix(key)):
                split = _split_entry_key(wid)
                if split is None:
                    raise Fatal(f"window store: key {wid!r} is not a window's")
                s = split[1]
                e_end, e_closed, e_acc = _decode(value)
                if s < end and start < e_end and wid not in parts:
                    parts[wid] = (s, e_end, e_closed, e_acc)
            for s, e_end, _, _ in parts.values():
                start, end = min(start, s), max(end, e_end)
            if (start, end) == before:
                break
        items = sorted(parts.items())
        single_same_start = len(items) == 1 and items[0][1][0] == start
        merged = None
        for wid, (s, e_end, e_closed, e_acc) in items:
            ctx.delete_timer(wid, e_end + self._lateness if e_closed else e_end)
            if not single_same_start:
                store.delete(wid)
            merged = e_acc if merged is None else agg.merge(merged, e_acc)
        if single_same_start:
            return start, end, None
        return start, end, merged


__all__ = [
    "Aggregate",
    "Count",
    "COUNT",
    "Closed",
    "Added",
    "Windows",
    "Error",
    "acc_int",
    "int_acc",
    "acc_float",
    "float_acc",
    "acc_json",
    "json_acc",
]
