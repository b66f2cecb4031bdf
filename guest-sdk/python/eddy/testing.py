"""Test operators in plain CPython (pytest, unittest), without building a component, as
Kafka Streams' TopologyTestDriver does: the operator runs against an in-memory host with
stores, timers and a watermark you move, and what it emits is returned::

    from eddy.testing import Harness
    from app import WordCount

    def test_counts_words():
        h = Harness(WordCount, config={"lowercase": "true"})
        out = h.process(eddy.Event(None, "a A b"))
        assert [(o.event.key, o.event.value) for o in out] == [(b"a", b"1"), (b"a", b"2"), (b"b", b"1")]

A batch that fails leaves no trace in state or timers, as on a server.
"""

import json
from typing import Dict, List, NamedTuple, Optional, Sequence, Union

from . import _api, _memory_host
from ._api import INHERIT_TIMESTAMP, Context, Error, Event, TaskInfo
from ._config import Config
from ._env import IN_COMPONENT


class Output(NamedTuple):
    """One emitted event and its side-output port (``None``: the main output)."""

    port: Optional[str]
    event: Event


class BatchFailed(Exception):
    """A batch failed at record ``index`` with ``error`` (an ``eddy.BadInput`` or
    ``eddy.Fatal``); the batch left no trace."""

    def __init__(self, index: int, error: Error):
        super().__init__(f"record {index}: {type(error).__name__}: {error.message}")
        self.index, self.error = index, error


def _config_text(key: str, value) -> str:
    """A config value as a spec hands it over: text, booleans as true/false, arrays and
    tables as JSON."""
    if value is None:
        raise ValueError(f"config {key!r} is None: give a string, number, boolean, list or dict")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


class _Collect:
    """What the operator emits, with timestamps resolved as the host resolves them."""

    def __init__(self):
        self.outputs: List[Output] = []

    def clear(self):
        self.outputs = []

    def push(self, port, event, current_timestamp):
        ts = current_timestamp if event.timestamp == INHERIT_TIMESTAMP else event.timestamp
        e = Event(event.key, event.value, ts, list(event.headers))
        self.outputs.append(Output(port, e))


def export(operator_class):
    """``eddy.export`` outside a component: a placeholder that keeps the class, so the
    operator's module imports in plain CPython."""

    class Handler:
        operator = operator_class

    return Handler


class Harness:
    """Drives one operator like a task of a pipeline, in memory. Creating a harness starts
    from empty state."""

    def __init__(self, operator, config: Optional[Dict[str, str]] = None, info: Optional[TaskInfo] = None):
        if IN_COMPONENT:
            raise RuntimeError("eddy.testing runs in plain CPython, not inside a component")
        self._state = _memory_host.STATE = _memory_host.MemoryState()
        self._state.info = info or TaskInfo("test", "operator", 1, 0, 1)
        self.op = operator() if isinstance(operator, type) else operator
        self.op.init(Config({k: _config_text(k, v) for k, v in (config or {}).items()}))
        self._out = _Collect()
        self._ctx = Context(self._out)

    @property
    def state_version(self) -> int:
        return type(self.op).STATE_VERSION

    def _call(self, body, before=None) -> List[Output]:
        _memory_host.STATE = self._state
        if before is None:
            before = self._state.snapshot()
        self._out.clear()
        self._ctx._begin(None)
        try:
            body()
            self._ctx._flush(keep=False)
        except BaseException:
            self._ctx._discard()
            self._state.restore(before)
            raise
        return list(self._out.outputs)

    def process(self, event: Union[Event, Sequence[Event]]) -> List[Output]:
        """Handles one record (or a batch of them) and returns what it emitted. A record
        that raises ``BadInput`` or ``Fatal`` raises it here (``BatchFailed`` for a batch)."""
        if isinstance(event, Event):
            return self._call(lambda: self._one(event))
        events = list(event)

        def body():
            for index, e in enumerate(events):
                try:
                    self._one(e)
                except Error as err:
                    raise BatchFailed(index, err) from err

        return self._call(body)

    def process_from(self, input: str, event: Union[Event, Sequence[Event]]) -> List[Output]:
        """Handles records of pipeline input ``input`` (what ``event.input()`` answers;
        ``"source"`` with ``process``)."""
        self._state.input = input
        try:
            return self.process(event)
        finally:
            self._state.input = "source"

    def _one(self, event: Event) -> None:
        _api._INPUT[0] = self._state.input
        self._ctx.current_timestamp = 0 if event.timestamp == INHERIT_TIMESTAMP else event.timestamp
        self.op.process(event, self._ctx)

    def advance_watermark(self, watermark: int) -> List[Output]:
        """Moves the watermark to ``watermark`` (never back) and fires every timer due, in
        time order; returns what the timers emitted."""
        self._state.watermark = max(self._state.watermark, watermark)
        outputs: List[Output] = []
        while True:
            _memory_host.STATE = self._state
            # Taken before the timer leaves the set: a failed call puts it back.
            before = self._state.snapshot()
            due = _memory_host.due_timer(self._state.watermark)
            if due is None:
                return outputs
            at, key = due

            def fire(at=at, key=key):
                _api._INPUT[0] = None
                self._ctx.current_timestamp = at
                self.op.on_timer(key, at, self._ctx)

            outputs.extend(self._call(fire, before))

    def store(self, name: str) -> Dict[bytes, bytes]:
        """Every entry of store ``name``, in key order."""
        return dict(sorted(self._state.stores.get(name, {}).items()))

    def put(self, name: str, key, value) -> None:
        """Writes an entry straight into store ``name`` (to set up a test)."""
        from ._api import _b

        self._state.stores.setdefault(name, {})[_b(key)] = _b(value)

    def timers(self) -> List[tuple]:
        """Pending timers as ``(at, key)``, in firing order."""
        return sorted(self._state.timers)

    def logs(self) -> List[tuple]:
        """What the operator logged, as ``(level, message)``."""
        return list(self._state.logs)

    def migrate(self, name: str, from_version: int) -> None:
        """Runs the operator's ``migrate`` over store ``name``, as a host upgrade would."""
        store = self._state.stores.get(name, {})
        for key, value in sorted(store.items()):
            new = self.op.migrate(name, key, value, from_version)
            if new is None:
                del store[key]
            elif not isinstance(new, (bytes, bytearray, memoryview)):
                raise TypeError(f"migrate returned {type(new).__name__} for key {key!r}; return bytes or None")
            else:
                store[key] = bytes(new)
