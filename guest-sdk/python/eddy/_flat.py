"""The flat batch format of the WIT world: byte strings back to back in one buffer,
spans pointing into it. Batches arrive and leave packed (``packed-handler``): their
descriptions are little-endian bytes that ``struct`` decodes in one native call."""

import struct

from wit_world.imports import types as t

ABSENT = 0xFFFFFFFF
_NONE = t.Span(offset=0, len=ABSENT)

# key offset, key len, value offset, value len, timestamp, headers start, headers len
_EVENT = struct.Struct("<IIIIqII")
# name offset, name len, value offset, value len
_HEADER = struct.Struct("<IIII")
# an event, then the port's offset and len
_OUTPUT = struct.Struct("<IIIIqIIII")

_pack_output = _OUTPUT.pack

# The `INHERIT_TIMESTAMP` of `_api` (which imports this module).
_INHERIT = -(2**63)


def _push(data: bytearray, value) -> "t.Span":
    if value is None:
        return _NONE
    offset = len(data)
    data += value
    return t.Span(offset=offset, len=len(value))


def _get(data, span):
    if span.len == ABSENT:
        return None
    return bytes(data[span.offset : span.offset + span.len])


def _event(data, key_offset, key_len, value_offset, value_len, timestamp, headers):
    Event = _event_class()
    e = Event.__new__(Event)
    e.key = None if key_len == ABSENT else data[key_offset : key_offset + key_len]
    e.value = b"" if value_len == ABSENT else data[value_offset : value_offset + value_len]
    e.timestamp = timestamp
    e.headers = headers
    return e


def _headers(data, packed, start, count):
    out = []
    for i in range(start, start + count):
        no, nl, vo, vl = _HEADER.unpack_from(packed, i * _HEADER.size)
        name = data[no : no + nl].decode("utf-8", "replace")
        out.append((name, b"" if vl == ABSENT else data[vo : vo + vl]))
    return out


_Event = None


def _event_class():
    """``_api.Event``: imported on first use, as ``_api`` imports this module."""
    global _Event
    if _Event is None:
        from ._api import Event

        _Event = Event
    return _Event


def packed_events(batch):
    """The events of a ``packed-batch``."""
    data, headers = bytes(batch.data), batch.headers
    out = []
    Event = _event_class()
    new = Event.__new__
    for ko, kl, vo, vl, ts, hs, hl in _EVENT.iter_unpack(batch.events):
        e = new(Event)
        e.key = None if kl == ABSENT else data[ko : ko + kl]
        e.value = b"" if vl == ABSENT else data[vo : vo + vl]
        e.timestamp = ts
        e.headers = _headers(data, headers, hs, hl) if hl else []
        out.append(e)
    return out


def events(batch):
    """The events of an ``event-batch`` (from hosts older than ``packed-handler``)."""
    data, headers = batch.data, batch.headers
    out = []
    for m in batch.events:
        hs = [
            (_get(data, h.name).decode("utf-8", "replace"), _get(data, h.value) or b"")
            for h in headers[m.headers_start : m.headers_start + m.headers_len]
        ]
        k, v = m.key, m.value
        out.append(_event(data, k.offset, k.len, v.offset, v.len, m.timestamp, hs))
    return out


class Outputs:
    """Collects what an operator emits, packed; ``take_packed`` hands it over as a
    ``packed-output``, ``take`` as an ``output-batch``."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.data = bytearray()
        self.outputs = bytearray()
        self.headers = bytearray()
        self.header_count = 0

    def push(self, port, event, current_timestamp):
        data = self.data
        key = event.key
        if key is None:
            ko, kl = 0, ABSENT
        else:
            ko, kl = len(data), len(key)
            data += key
        vo = len(data)
        value = event.value
        data += value
        start = self.header_count
        headers = event.headers
        for name, v in headers:
            name = name.encode("utf-8")
            no = len(data)
            data += name
            data += v
            self.headers += _HEADER.pack(no, len(name), no + len(name), len(v))
        self.header_count += len(headers)
        if port is None:
            po, pl = 0, ABSENT
        else:
            port = port.encode("utf-8")
            po, pl = len(data), len(port)
            data += port
        ts = current_timestamp if event.timestamp == _INHERIT else event.timestamp
        self.outputs += _pack_output(ko, kl, vo, len(value), ts, start, len(headers), po, pl)

    def take_packed(self):
        batch = t.PackedOutput(data=bytes(self.data), outputs=bytes(self.outputs), headers=bytes(self.headers))
        self.clear()
        return batch

    def take(self):
        span = lambda o, n: t.Span(offset=o, len=n)  # noqa: E731
        outputs = [
            t.OutputMeta(
                event=t.EventMeta(key=span(ko, kl), value=span(vo, vl), timestamp=ts, headers_start=hs, headers_len=hl),
                port=span(po, pl),
            )
            for ko, kl, vo, vl, ts, hs, hl, po, pl in _OUTPUT.iter_unpack(self.outputs)
        ]
        headers = [
            t.HeaderMeta(name=span(no, nl), value=span(vo, vl)) for no, nl, vo, vl in _HEADER.iter_unpack(self.headers)
        ]
        batch = t.OutputBatch(data=bytes(self.data), outputs=outputs, headers=headers)
        self.clear()
        return batch


def byte_list(items):
    data = bytearray()
    spans = [_push(data, i) for i in items]
    return t.ByteList(data=bytes(data), items=spans)


def byte_list_items(lst):
    return [_get(lst.data, s) for s in lst.items]


def kv_entries(batch):
    return [(_get(batch.data, m.key) or b"", _get(batch.data, m.value) or b"") for m in batch.entries]


_WRITE = struct.Struct("<IIII")


def packed_writes(writes):
    """``(key, value)`` pairs (a ``None`` value deletes the key) as ``packed-writes``."""
    data = bytearray()
    entries = bytearray()
    pack = _WRITE.pack
    for key, value in writes:
        ko = len(data)
        data += key
        vo = len(data)
        if value is None:
            entries += pack(ko, len(key), 0, ABSENT)
        else:
            data += value
            entries += pack(ko, len(key), vo, len(value))
    return t.PackedWrites(data=bytes(data), entries=bytes(entries))
