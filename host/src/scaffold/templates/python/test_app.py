"""Tests of {{name}} in plain CPython, no component needed: `python3 -m unittest` (or
pytest). `eddy new` and `eddy build` keep the SDK in .eddy/python."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".eddy", "python"))

import eddy  # noqa: E402
from eddy.testing import Harness  # noqa: E402

from app import Counter  # noqa: E402


class CounterTest(unittest.TestCase):
    def test_counts_per_key(self):
        h = Harness(Counter, config={"greeting": "hi"})
        out = h.process([eddy.Event("a", "x"), eddy.Event("b", "y"), eddy.Event("a", "z")])
        self.assertEqual(
            [(o.event.key, o.event.value) for o in out],
            [(b"a", b"hi #1"), (b"b", b"hi #1"), (b"a", b"hi #2")],
        )

    def test_a_keyless_event_is_bad_input_and_leaves_no_trace(self):
        h = Harness(Counter)
        with self.assertRaises(eddy.BadInput):
            h.process(eddy.Event.keyless("x"))
        self.assertEqual(h.store("counts"), {})


if __name__ == "__main__":
    unittest.main()
