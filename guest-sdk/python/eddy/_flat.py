"""The flat batch format of the WIT world: byte strings back to back in one buffer,
spans pointing into it."""

from wit_world.imports import types as t

ABSENT = 0xFFFFFFFF
_NONE = t.Span(offset=0, len=ABSENT)


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


def events(batch):
    """The events of an ``event-batch``."""
    from ._api import Event

    data, headers = batch.data, batch.headers
    out = []
    for m in batch.events:
        e = Event.__new__(Event)
        e.key = _get(data, m.key)
        e.value = _get(data, m.value) or b""
        e.timestamp = m.timestamp
        e.headers = [
            (_get(data, h.name).decode("utf-8", "replace"), _get(data, h.value) or b"")
            for h in headers[m.headers_start : m.headers_start + m.headers_len]
        ]
        out.append(e)
    return out


class Outputs:
    """Builds an ``output-batch``."""

    def __init__(self):
        self.clear()

    def clear(self):
        self.data = bytearray()
        self.outputs = []
        self.headers = []

    def push(self, port, event, current_timestamp):
        from ._api import INHERIT_TIMESTAMP

        data = self.data
        key = _push(data, event.key)
        value = _push(data, event.value)
        start = len(self.headers)
        for name, v in event.headers:
            self.headers.append(t.HeaderMeta(name=_push(data, name.encode("utf-8")), value=_push(data, v)))
        ts = current_timestamp if event.timestamp == INHERIT_TIMESTAMP else event.timestamp
        meta = t.EventMeta(key=key, value=value, timestamp=ts, headers_start=start, headers_len=len(event.headers))
        port_span = _push(data, None if port is None else port.encode("utf-8"))
        self.outputs.append(t.OutputMeta(event=meta, port=port_span))

    def take(self):
        batch = t.OutputBatch(data=bytes(self.data), outputs=self.outputs, headers=self.headers)
        self.clear()
        return batch


def byte_list(items):
    data = bytearray()
    spans = [_push(data, i) for i in items]
    return t.ByteList(data=bytes(data), items=spans)


def byte_list_items(lst):
    return [_get(lst.data, s) for s in lst.items]


def kv_batch(entries):
    data = bytearray()
    metas = [t.KvMeta(key=_push(data, k), value=_push(data, v)) for k, v in entries]
    return t.KvBatch(data=bytes(data), entries=metas)


def kv_entries(batch):
    return [(_get(batch.data, m.key) or b"", _get(batch.data, m.value) or b"") for m in batch.entries]
