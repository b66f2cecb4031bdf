"""The exported ``handler`` and ``packed-handler``: one operator instance per component
instance."""

import base64

from componentize_py_types import Err

from wit_world.imports import types as t

from . import _flat
from . import _api, _host
from ._api import BadInput, Context, Error, Fatal
from ._config import Config


def _key_text(key: bytes) -> str:
    """A key for a message: quoted text when it is printable UTF-8, else base64."""
    try:
        text = key.decode("utf-8")
        if text.isprintable():
            return repr(text)
    except UnicodeDecodeError:
        pass
    return "base64:" + base64.b64encode(key).decode("ascii")


def _wit_error(e: Error):
    if isinstance(e, BadInput):
        return t.Error_BadInput(e.message)
    return t.Error_Fatal(e.message)


def export(operator_class):
    """The ``Handler`` class componentize-py exports: ``Handler = eddy.export(MyOperator)``."""

    state = {}

    def run(events, epoch=None):
        """Runs a batch; with the host's state ``epoch``, the stores' caches may outlive it."""
        op, outputs, ctx = state["op"], state["outputs"], state["ctx"]
        outputs.clear()
        ctx._begin(epoch)
        _api._INPUT[0] = _host.current_input()
        process = op.process
        index = 0
        try:
            for index, event in enumerate(events):
                ctx.current_timestamp = event.timestamp
                process(event, ctx)
            ctx._flush(keep=epoch is not None)
        except Error as e:
            outputs.clear()
            ctx._discard()
            raise Err(t.BatchError(index=index, error=_wit_error(e)))
        except BaseException:
            ctx._discard()
            raise

    class PackedHandler:
        def process(self, batch):
            run(_flat.packed_events(batch), batch.state_epoch)
            return state["outputs"].take_packed()

    class Handler:
        def init(self, config):
            op = operator_class()
            try:
                op.init(Config(config))
            except Error as e:
                raise Err(e.message)
            except Exception as e:  # a bad config, say: refuse to start, with the reason
                raise Err(f"{type(e).__name__}: {e}")
            outputs = _flat.Outputs()
            state["op"], state["outputs"], state["ctx"] = op, outputs, Context(outputs)
            return t.OperatorInfo(state_version=operator_class.STATE_VERSION)

        def process(self, batch):
            run(_flat.events(batch))
            return state["outputs"].take()

        def on_timer(self, key, at):
            op, outputs, ctx = state["op"], state["outputs"], state["ctx"]
            outputs.clear()
            ctx.current_timestamp = at
            _api._INPUT[0] = None
            # No epoch comes with a timer: it starts from the host's values.
            ctx._begin(None)
            try:
                op.on_timer(key, at, ctx)
                ctx._flush(keep=False)
            except Error as e:
                outputs.clear()
                ctx._discard()
                raise Err(_wit_error(e))
            except BaseException:
                ctx._discard()
                raise
            return outputs.take()

        def migrate(self, store, from_version, entries):
            op = state["op"]
            values = []
            for key, value in _flat.kv_entries(entries):
                where = f"migrating store {store!r} key {_key_text(key)}"
                try:
                    v = op.migrate(store, key, value, from_version)
                except Error as e:
                    raise Err(f"{where}: {e.message}")
                except Exception as e:  # the operator's own bug: its type and message
                    raise Err(f"{where}: {type(e).__name__}: {e}")
                if v is not None and not isinstance(v, (bytes, bytearray, memoryview)):
                    raise Err(
                        f"{where}: migrate returned {type(v).__name__}; "
                        "return bytes (or None to drop the key)"
                    )
                values.append(None if v is None else bytes(v))
            return _flat.byte_list(values)

    # `eddy build` exports it as `PackedHandler` next to the module's `Handler`.
    Handler.Packed = PackedHandler
    return Handler
