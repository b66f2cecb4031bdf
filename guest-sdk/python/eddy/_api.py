"""The public API: events, stores, the context, the operator base class, errors."""

import json
import struct
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from ._env import IN_COMPONENT

if IN_COMPONENT:
    from . import _host
else:  # plain CPython: the in-memory host of `eddy.testing`
    from . import _memory_host as _host

Bytes = Union[bytes, bytearray, str]

#: Timestamp of an event built without one: when emitted it takes the timestamp of the
#: record (or timer) being handled.
INHERIT_TIMESTAMP = -(2**63)

SCAN_PAGE = 256

#: Values a store's cache holds, at most, and their bytes (keys and values): past either,
#: it hands its writes to the host and starts over, within a batch too.
CACHE_ENTRIES = 16384
CACHE_BYTES = 4 << 20

#: The name of the pipeline input of the batch being handled (``Event.input``): the host
#: hands batches over one input at a time; ``None`` in ``on_timer``.
_INPUT: List[Optional[str]] = [None]

#: The input name of a pipeline with one ``[source]``.
SOURCE_INPUT = "source"

#: Every store opened in this instance (through ``ctx.store`` or ``Store(name)``), by
#: name: one object, so one cache, per store; their caches are flushed and dropped
#: together.
_STORES: Dict[str, "Store"] = {}


def _b(value: Bytes) -> bytes:
    if isinstance(value, str):
        return value.encode("utf-8")
    return bytes(value)


class Error(Exception):
    """Why an operator could not handle a record."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadInput(Error):
    """This record is bad: the pipeline's ``on_error`` policy handles it."""


class Fatal(Error):
    """The operator cannot go on: the task fails whatever the policy."""


class Event:
    """One record: an optional key, a value, an event time (ms) and headers."""

    __slots__ = ("key", "value", "timestamp", "headers")

    def __init__(self, key: Optional[Bytes], value: Bytes, timestamp: int = INHERIT_TIMESTAMP, headers=None):
        # `str` is the common case: encode it without a call to `_b`.
        self.key = None if key is None else key.encode() if type(key) is str else _b(key)
        self.value = value.encode() if type(value) is str else _b(value)
        self.timestamp = timestamp
        self.headers: List[Tuple[str, bytes]] = [(n, _b(v)) for n, v in headers] if headers else []

    @staticmethod
    def keyless(value: Bytes) -> "Event":
        return Event(None, value)

    def at(self, timestamp: int) -> "Event":
        self.timestamp = timestamp
        return self

    def with_header(self, name: str, value: Bytes) -> "Event":
        self.headers.append((name, _b(value)))
        return self

    def key_str(self) -> Optional[str]:
        if self.key is None:
            return None
        try:
            return self.key.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"key is not UTF-8: {e}")

    def input(self) -> Optional[str]:
        """The name of the pipeline input this event came from: its ``[[inputs]]`` name,
        or ``"source"`` for a pipeline with one ``[source]``; ``None`` in ``on_timer`` and
        after a repartition. (The input of the batch being handled: ask it in
        ``process``.)"""
        return _INPUT[0]

    def value_str(self) -> str:
        try:
            return self.value.decode("utf-8")
        except UnicodeDecodeError as e:
            raise BadInput(f"value is not UTF-8: {e}")

    def value_json(self):
        try:
            return json.loads(self.value)
        except ValueError as e:
            raise BadInput(f"value is not JSON: {e}")

    def header(self, name: str) -> Optional[bytes]:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    def __repr__(self):
        return f"Event(key={self.key!r}, value={self.value!r}, timestamp={self.timestamp}, headers={self.headers!r})"

    def __eq__(self, other):
        return isinstance(other, Event) and (self.key, self.value, self.timestamp, self.headers) == (
            other.key,
            other.value,
            other.timestamp,
            other.headers,
        )


_COUNTER = struct.Struct("<q")
_pack_counter, _unpack_counter = _COUNTER.pack, _COUNTER.unpack
_MISSING = object()


def _as_bytes(value):
    """A cached value as the host holds it (counters are cached as numbers)."""
    return _pack_counter(value) if type(value) is int else value


def _not_a_counter(key: bytes, value: bytes) -> "BadInput":
    text = key.decode("utf-8", "replace")
    return BadInput(f"value under key {json.dumps(text)} is {len(value)} bytes, not an 8-byte little-endian counter")


class Store:
    """A durable key-value store of the operator, scoped to its source partition.

    Keys and values are bytes (``str`` is taken as UTF-8). Writes are visible at once and
    become durable when the host commits the batch, with the source offset and outputs.

    The store keeps what it read and wrote in a cache and hands the writes to the host in
    one call when a batch ends (or before a scan), so a key used by many records crosses
    to the host once. The cache outlives a batch while the host says (by its state epoch)
    that nothing this instance wrote was forgotten, within ``CACHE_ENTRIES`` values and
    ``CACHE_BYTES``. A failed batch drops the cache, and the host drops the batch's
    writes: nothing of it remains.
    """

    def __new__(cls, name: str):
        # One object per store: two would each cache, and miss the other's writes.
        existing = _STORES.get(name)
        if existing is not None:
            return existing
        return super().__new__(cls)

    def __init__(self, name: str):
        if _STORES.get(name) is self:
            return
        self.name = name
        self._handle = _host.open_store(name)
        # key -> value (None: absent; an int: a counter, kept as the number so that an
        # increment needs no packing) as the batch sees it; `_dirty` holds the keys
        # written since the last flush.
        self._cache: Dict[bytes, Union[None, bytes, int]] = {}
        self._dirty: Dict[bytes, None] = {}
        self._bytes = 0
        _STORES[name] = self

    def _flush(self) -> None:
        if self._dirty:
            cache = self._cache
            _host.write_packed(self._handle, [(key, _as_bytes(cache[key])) for key in self._dirty])
            self._dirty.clear()

    def _reset(self) -> None:
        self._cache.clear()
        self._dirty.clear()
        self._bytes = 0

    def _put(self, key: bytes, value: Optional[bytes]) -> None:
        """Caches ``value`` under ``key``; past the cache's bounds, hands the writes to the
        host and starts over (the host keeps them in the batch, so a failure still drops
        them)."""
        self._cache[key] = value
        self._bytes += len(key) + (0 if value is None else 8 if type(value) is int else len(value))
        if self._bytes > CACHE_BYTES or len(self._cache) > CACHE_ENTRIES:
            self._flush()
            self._reset()

    def get(self, key: Bytes) -> Optional[bytes]:
        key = _b(key)
        try:
            return _as_bytes(self._cache[key])
        except KeyError:
            value = self._handle.get(key)
            self._put(key, value)
            return value

    def get_many(self, keys: Sequence[Bytes]) -> List[Optional[bytes]]:
        keys = [_b(k) for k in keys]
        cache = self._cache
        missing = [k for k in keys if k not in cache]
        if not missing:
            return [_as_bytes(cache[k]) for k in keys]
        found = dict(zip(missing, _host.get_many(self._handle, missing)))
        # Answer first: caching may start the cache over.
        values = [found[k] if k in found else _as_bytes(cache[k]) for k in keys]
        for k, v in found.items():
            self._put(k, v)
        return values

    def set(self, key: Bytes, value: Bytes) -> None:
        key = _b(key)
        self._dirty[key] = None
        self._put(key, _b(value))

    def set_many(self, entries: Sequence[Tuple[Bytes, Bytes]]) -> None:
        for k, v in entries:
            self.set(k, v)

    def delete(self, key: Bytes) -> None:
        key = _b(key)
        self._dirty[key] = None
        self._put(key, None)

    def delete_range(self, start: Bytes, end: Optional[Bytes] = None) -> None:
        """Removes every key in ``[start, end)`` (to the end of the store without ``end``)."""
        self._flush()
        self._reset()
        self._handle.delete_range(_b(start), None if end is None else _b(end))

    def scan(self, start: Bytes = b"", end: Optional[Bytes] = None) -> Iterator[Tuple[bytes, bytes]]:
        """The entries with keys in ``[start, end)``, in key order, fetched page by page."""
        start, end = _b(start), None if end is None else _b(end)
        continuation = None
        while True:
            self._flush()
            entries, continuation = _host.scan(self._handle, start, end, SCAN_PAGE, continuation)
            yield from entries
            if continuation is None:
                return

    def scan_prefix(self, prefix: Bytes) -> Iterator[Tuple[bytes, bytes]]:
        prefix = _b(prefix)
        end = bytearray(prefix)
        while end and end[-1] == 0xFF:
            end.pop()
        if end:
            end[-1] += 1
        return self.scan(prefix, bytes(end) if end else None)

    def increment(self, key: Bytes, delta: int = 1) -> int:
        """Adds ``delta`` to the counter under ``key`` (8-byte little-endian integers)."""
        key = key.encode() if type(key) is str else _b(key)
        if not -(2**63) <= delta < 2**63:
            raise Fatal(f"store {self.name}: increment by {delta}, outside the 64-bit range")
        cache = self._cache
        value = cache.get(key, _MISSING)
        if type(value) is int:
            n = value + delta
        elif value is _MISSING:
            # A key not seen lately: the host adds and answers in one call.
            n = _host.increment(self._handle, key, delta)
            self._put(key, n)
            return n
        elif value is None:
            n = delta
        elif len(value) == 8:
            n = _unpack_counter(value)[0] + delta
        else:
            raise _not_a_counter(key, value)
        if not -(2**63) <= n < 2**63:
            n = (n + 2**63) % 2**64 - 2**63  # wraps, as the host's counters do
        cache[key] = n
        self._dirty[key] = None
        return n

    def increment_many(self, keys: Sequence[Bytes], deltas: Sequence[int]) -> List[int]:
        if len(keys) != len(deltas):
            raise Fatal(f"increment_many got {len(keys)} keys and {len(deltas)} deltas")
        return [self.increment(k, d) for k, d in zip(keys, deltas)]

    def get_json(self, key: Bytes):
        raw = self.get(key)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError as e:
            raise Fatal(f"store {self.name}: stored value is not JSON: {e}")

    def set_json(self, key: Bytes, value) -> None:
        self.set(key, json.dumps(value, separators=(",", ":")))


class TaskInfo:
    __slots__ = ("pipeline", "operator", "version", "partition", "partition_count")

    def __init__(self, pipeline, operator, version, partition, partition_count):
        self.pipeline, self.operator, self.version = pipeline, operator, version
        self.partition, self.partition_count = partition, partition_count


class Context:
    """What an operator can do while it handles a record or a timer."""

    def __init__(self, outputs):
        self._out = outputs
        self._stores: Dict[str, Store] = {}
        self._epoch: Optional[int] = None
        self.current_timestamp = 0

    def _begin(self, epoch: Optional[int]) -> None:
        """Starts a call: the caches stay only when the host's state epoch is the one they
        were filled in (no write of this instance was forgotten since)."""
        if epoch is None or epoch != self._epoch:
            self._discard()
        self._epoch = epoch

    def _flush(self, keep: bool) -> None:
        """Hands the call's cached writes to the host (at the end of a batch or timer);
        ``keep`` keeps the cached values for the next batch."""
        for s in _STORES.values():
            s._flush()
            if not keep:
                s._reset()

    def _discard(self) -> None:
        """Forgets the caches (after a failed call the host drops its writes too)."""
        self._epoch = None
        for s in _STORES.values():
            s._reset()

    def store(self, name: str) -> Store:
        s = self._stores.get(name)
        if s is None:
            s = self._stores[name] = Store(name)
        return s

    def emit(self, event: Event) -> None:
        """Emits on the main output: to the next operator, or the pipeline's sink."""
        self._out.push(None, event, self.current_timestamp)

    def emit_to(self, port: str, event: Event) -> None:
        """Emits on side output ``port`` (topic ``<pipeline>.<port>``)."""
        self._out.push(port, event, self.current_timestamp)

    def watermark(self) -> int:
        return _host.watermark()

    def set_timer(self, key: Bytes, at: int) -> None:
        _host.set_timer(_b(key), at)

    def delete_timer(self, key: Bytes, at: int) -> None:
        _host.delete_timer(_b(key), at)

    def info(self) -> TaskInfo:
        return _host.info()

    def log(self, level: str, message: str) -> None:
        """Logs into the host's log; ``level`` is trace, debug, info, warn or error."""
        _host.log(level, message)


class Operator:
    """Subclass it, implement ``process``, and export it with ``eddy.export``.

    Keep durable data in stores, not in attributes: the host may replace the instance
    (after a failure, on an upgrade) and only stores survive.
    """

    #: Version of the format this operator writes to its stores (see ``migrate``).
    STATE_VERSION = 1

    def init(self, config) -> None:
        """Called once with the operator's ``config`` from the pipeline spec: an
        ``eddy.Config`` (a ``dict`` with ``int``, ``float``, ``bool``, ``string``,
        ``duration`` and ``list``)."""

    def process(self, event: Event, ctx: Context) -> None:
        raise NotImplementedError("implement process(self, event, ctx)")

    def on_timer(self, key: bytes, at: int, ctx: Context) -> None:
        """A timer set with ``ctx.set_timer`` fired."""

    def migrate(self, store: str, key: bytes, value: bytes, from_version: int) -> Optional[bytes]:
        """Converts a value written in format ``from_version``; ``None`` deletes the key."""
        return value
