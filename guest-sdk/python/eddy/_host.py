"""The host's imports, through componentize-py's generated bindings (``wit_world``)."""

from componentize_py_types import Err

from wit_world.imports import context as _context
from wit_world.imports import log as _log
from wit_world.imports import state as _state
from wit_world.imports import timers as _timers
from wit_world.imports import types as _types

from . import _flat

_LEVELS = {
    "trace": _log.Level.TRACE,
    "debug": _log.Level.DEBUG,
    "info": _log.Level.INFO,
    "warn": _log.Level.WARN,
    "error": _log.Level.ERROR,
}


def _state_error(e: Err):
    from ._api import BadInput, Fatal

    v = e.value
    if isinstance(v, _state.StateError_NotACounter):
        return BadInput(v.value)
    return Fatal(getattr(v, "value", str(v)))


def open_store(name):
    try:
        return _state.Store.open(name)
    except Err as e:
        raise _state_error(e)


def get_many(handle, keys):
    out = handle.get_many(_flat.byte_list(keys))
    return _flat.byte_list_items(out)


def write_packed(handle, writes):
    """Sets (and, for a ``None`` value, deletes) many keys in one call."""
    handle.write_packed(_flat.packed_writes(writes))


def scan(handle, start, end, limit, continuation):
    page = handle.scan(start, end, limit, continuation)
    return _flat.kv_entries(page.entries), page.continuation


def increment(handle, key, delta):
    try:
        return handle.increment(key, delta)
    except Err as e:
        raise _state_error(e)


def watermark():
    return _timers.watermark()


def set_timer(key, at):
    _timers.set_event_timer(key, at)


def delete_timer(key, at):
    _timers.delete_event_timer(key, at)


def info():
    from ._api import TaskInfo

    i = _context.info()
    return TaskInfo(i.pipeline, i.operator, i.version, i.partition, i.partition_count)


def current_input():
    return _context.current_input()


def log(level, message):
    _log.log(_LEVELS.get(level, _log.Level.INFO), message)


types = _types
