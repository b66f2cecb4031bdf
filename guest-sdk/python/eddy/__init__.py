"""Write Eddy stream operators in Python.

An operator handles one record at a time, keeps durable state in named stores, and
emits events; batching and the flat wire format stay inside this module::

    import eddy

    class WordCount(eddy.Operator):
        def process(self, event, ctx):
            counts = ctx.store("counts")
            for word in event.value_str().split():
                n = counts.increment(word, 1)
                ctx.emit(eddy.Event(word, str(n)))

    Handler = eddy.export(WordCount)

Build the component with ``eddy build DIR`` (componentize-py under the hood).
"""

from ._api import (  # noqa: F401
    INHERIT_TIMESTAMP,
    BadInput,
    Context,
    Error,
    Event,
    Fatal,
    Operator,
    Store,
    TaskInfo,
)
from ._config import Config  # noqa: F401
from ._env import IN_COMPONENT

if IN_COMPONENT:
    from ._export import export  # noqa: F401
else:  # plain CPython: the operator's module imports, and eddy.testing runs it
    from .testing import export  # noqa: F401
