"""The operator's ``config`` from the pipeline spec, with typed accessors."""

import json
import math
import re
from typing import List, Optional

_INT = re.compile(r"[+-]?[0-9]{1,40}")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"([0-9]+)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _invalid(name: str, raw: str, expected: str):
    from ._api import Fatal

    return Fatal(f"config `{name}` = {json.dumps(raw)}: expected {expected}")


class Config(dict):
    """The spec's ``config`` table: a ``dict`` of ``str`` to ``str`` (arrays and tables
    arrive as JSON text), plus accessors that parse a value or fail ``init`` with a
    message naming the key, the value and what was expected::

        def init(self, config):
            self.threshold = config.int("threshold", 5)
            self.window_ms = config.duration("window", "1m")
    """

    def _typed(self, name: str, default, expected: str, parse):
        raw = self.get(name)
        if raw is None:
            return default
        value = parse(raw.strip())
        if value is None:
            raise _invalid(name, raw, expected)
        return value

    def int(self, name: str, default: int = 0) -> int:
        """``threshold = 5``: a whole number (64-bit)."""

        def parse(v):
            if _INT.fullmatch(v) and -(2**63) <= int(v) < 2**63:
                return int(v)
            return None

        return self._typed(name, default, "a whole number, such as 5", parse)

    def float(self, name: str, default: float = 0.0) -> float:
        """``ratio = 0.5``: a finite number."""

        def parse(v):
            if not _FLOAT.fullmatch(v):
                return None
            f = float(v)
            return f if math.isfinite(f) else None

        return self._typed(name, default, "a number, such as 0.5", parse)

    def bool(self, name: str, default: bool = False) -> bool:
        """``lowercase = true``: ``true`` or ``false``."""
        return self._typed(name, default, "true or false", {"true": True, "false": False}.get)

    def string(self, name: str, default: str = "") -> str:
        """The value as text."""
        return self.get(name, default)

    def duration(self, name: str, default: str) -> int:
        """``window = "1m"``, in milliseconds: a whole number with ``ms``, ``s``, ``m``,
        ``h`` or ``d``; ``default`` is written the same way."""
        raw = self.get(name, default)
        m = _DURATION.fullmatch(raw.strip())
        ms = int(m.group(1)) * _UNIT_MS[m.group(2)] if m else None
        if ms is None or ms >= 2**63:
            raise _invalid(name, raw, 'a duration such as "250ms", "5s", "1m", "2h" or "1d"')
        return ms

    def list(self, name: str) -> List[str]:
        """``pages = ["home", "cart"]``: each item as text (numbers and booleans too);
        empty when unset."""
        raw: Optional[str] = self.get(name)
        if raw is None:
            return []
        how = 'a list of strings, numbers or booleans, such as ["a", "b"]'
        try:
            items = json.loads(raw)
        except ValueError:
            raise _invalid(name, raw, how)
        if not isinstance(items, list):
            raise _invalid(name, raw, how)
        out = []
        for item in items:
            if isinstance(item, bool):
                out.append("true" if item else "false")
            elif isinstance(item, (str, int, float)):
                out.append(str(item))
            else:
                raise _invalid(name, raw, how)
        return out
