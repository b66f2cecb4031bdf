"""The host's imports in memory, for plain CPython (`eddy.testing`): the same functions as
`_host`, over stores, timers and logs that a `Harness` owns."""

from typing import Dict, List, Optional, Set, Tuple


class MemoryState:
    """What a host keeps for one task: stores, timers, the watermark, logs."""

    def __init__(self):
        self.stores: Dict[str, Dict[bytes, bytes]] = {}
        self.timers: Set[Tuple[int, bytes]] = set()
        self.watermark = -(2**63)
        self.logs: List[Tuple[str, str]] = []
        self.info = None
        self.input = "source"

    def snapshot(self):
        return ({n: dict(s) for n, s in self.stores.items()}, set(self.timers))

    def restore(self, snapshot) -> None:
        self.stores, self.timers = snapshot


#: The state the running harness serves.
STATE = MemoryState()


class MemoryStore:
    """A store handle, as `_host.open_store` gives one."""

    def __init__(self, name: str):
        self.name = name

    @property
    def data(self) -> Dict[bytes, bytes]:
        return STATE.stores.setdefault(self.name, {})

    def get(self, key: bytes) -> Optional[bytes]:
        return self.data.get(key)

    def delete(self, key: bytes) -> None:
        self.data.pop(key, None)

    def delete_range(self, start: bytes, end: Optional[bytes]) -> None:
        for k in [k for k in self.data if k >= start and (end is None or k < end)]:
            del self.data[k]


def open_store(name):
    from ._api import Fatal

    ok = 0 < len(name) <= 64 and not name.startswith("__")
    if not ok or any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in name):
        raise Fatal(f"cannot open store {name}: store names are 1 to 64 of A-Z a-z 0-9 . _ - (not starting with __)")
    return MemoryStore(name)


def get_many(handle, keys):
    return [handle.get(k) for k in keys]


def write_packed(handle, writes):
    for key, value in writes:
        if value is None:
            handle.delete(key)
        else:
            handle.data[key] = bytes(value)


def scan(handle, start, end, limit, continuation):
    keys = sorted(k for k in handle.data if k >= (continuation or start) and (end is None or k < end))
    page = keys[:limit]
    more = keys[limit] if len(keys) > limit else None
    return [(k, handle.data[k]) for k in page], more


def increment(handle, key, delta):
    from ._api import _COUNTER, _not_a_counter

    value = handle.data.get(key)
    if value is not None and len(value) != 8:
        raise _not_a_counter(key, value)
    n = (0 if value is None else _COUNTER.unpack(value)[0]) + delta
    n = (n + 2**63) % 2**64 - 2**63
    handle.data[key] = _COUNTER.pack(n)
    return n


def watermark():
    return STATE.watermark


def set_timer(key, at):
    STATE.timers.add((at, bytes(key)))


def delete_timer(key, at):
    STATE.timers.discard((at, bytes(key)))


def due_timer(watermark):
    """The first timer due at `watermark`, removed, or None."""
    if not STATE.timers:
        return None
    first = min(STATE.timers)
    if first[0] > watermark:
        return None
    STATE.timers.remove(first)
    return first


def info():
    return STATE.info


def current_input():
    return STATE.input


def log(level, message):
    STATE.logs.append((level, message))

