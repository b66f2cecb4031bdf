"""The public API: events, stores, the context, the operator base class, errors."""

import json
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

from . import _host

Bytes = Union[bytes, bytearray, str]

#: Timestamp of an event built without one: when emitted it takes the timestamp of the
#: record (or timer) being handled.
INHERIT_TIMESTAMP = -(2**63)

SCAN_PAGE = 256


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
        self.key = None if key is None else _b(key)
        self.value = _b(value)
        self.timestamp = timestamp
        self.headers: List[Tuple[str, bytes]] = [(n, _b(v)) for n, v in (headers or [])]

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


class Store:
    """A durable key-value store of the operator, scoped to its source partition.

    Keys and values are bytes (``str`` is taken as UTF-8). Writes are visible at once and
    become durable when the host commits the batch, with the source offset and outputs.
    """

    def __init__(self, name: str):
        self.name = name
        self._handle = _host.open_store(name)

    def get(self, key: Bytes) -> Optional[bytes]:
        return self._handle.get(_b(key))

    def get_many(self, keys: Sequence[Bytes]) -> List[Optional[bytes]]:
        return _host.get_many(self._handle, [_b(k) for k in keys])

    def set(self, key: Bytes, value: Bytes) -> None:
        self._handle.set(_b(key), _b(value))

    def set_many(self, entries: Sequence[Tuple[Bytes, Bytes]]) -> None:
        _host.set_many(self._handle, [(_b(k), _b(v)) for k, v in entries])

    def delete(self, key: Bytes) -> None:
        self._handle.delete(_b(key))

    def delete_range(self, start: Bytes, end: Optional[Bytes] = None) -> None:
        """Removes every key in ``[start, end)`` (to the end of the store without ``end``)."""
        self._handle.delete_range(_b(start), None if end is None else _b(end))

    def scan(self, start: Bytes = b"", end: Optional[Bytes] = None) -> Iterator[Tuple[bytes, bytes]]:
        """The entries with keys in ``[start, end)``, in key order, fetched page by page."""
        start, end = _b(start), None if end is None else _b(end)
        continuation = None
        while True:
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
        return _host.increment(self._handle, _b(key), delta)

    def increment_many(self, keys: Sequence[Bytes], deltas: Sequence[int]) -> List[int]:
        return _host.increment_many(self._handle, [_b(k) for k in keys], list(deltas))

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
        self.current_timestamp = 0

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

    def init(self, config: Dict[str, str]) -> None:
        """Called once with the operator's ``config`` from the pipeline spec."""

    def process(self, event: Event, ctx: Context) -> None:
        raise NotImplementedError("implement process(self, event, ctx)")

    def on_timer(self, key: bytes, at: int, ctx: Context) -> None:
        """A timer set with ``ctx.set_timer`` fired."""

    def migrate(self, store: str, key: bytes, value: bytes, from_version: int) -> Optional[bytes]:
        """Converts a value written in format ``from_version``; ``None`` deletes the key."""
        return value
