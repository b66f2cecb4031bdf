"""The Python SDK in plain CPython, through its harness: typed config, the store cache,
windows' running values and accumulator helpers. Run: python3 -m unittest discover
guest-sdk/python/tests (the repository's test suite does)."""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import eddy  # noqa: E402
from eddy.testing import BatchFailed, Harness  # noqa: E402
from eddy.window import COUNT, Aggregate, Windows, acc_float, acc_int, acc_json, float_acc, int_acc, json_acc  # noqa: E402


class ConfigTest(unittest.TestCase):
    def test_typed_values_parse_or_name_the_key_the_value_and_what_was_expected(self):
        c = eddy.Config({"threshold": " 5", "ratio": "0.5", "on": "true", "window": "2m",
                         "pages": '["home", 7, true, 1.5]', "bad": "five"})
        self.assertEqual(c.int("threshold", 1), 5)
        self.assertEqual(c.int("missing", 1), 1)
        self.assertEqual(c.float("ratio"), 0.5)
        self.assertIs(c.bool("on"), True)
        self.assertEqual(c.duration("window", "1s"), 120_000)
        self.assertEqual(c.duration("missing", "250ms"), 250)
        self.assertEqual(c.list("pages"), ["home", "7", "true", "1.5"])
        self.assertEqual(c.list("missing"), [])
        self.assertEqual(c.string("missing", "x"), "x")
        for read, says in [(c.int, "a whole number"), (c.float, "a number"), (c.bool, "true or false"),
                           (lambda n: c.duration(n, "1s"), "a duration"), (c.list, "a list")]:
            with self.assertRaises(eddy.Fatal) as e:
                read("bad")
            self.assertIn("`bad`", e.exception.message)
            self.assertIn('"five"', e.exception.message)
            self.assertIn(says, e.exception.message)
        for bad in ["1_000", "5.0", "9223372036854775808"]:
            with self.assertRaises(eddy.Fatal):
                eddy.Config({"n": bad}).int("n")
        for bad in ["inf", "nan", "1_0"]:
            with self.assertRaises(eddy.Fatal):
                eddy.Config({"n": bad}).float("n")
        for bad in ["5 parsecs", "-1s", "99999999999999999999d"]:
            with self.assertRaises(eddy.Fatal):
                eddy.Config({"d": bad}).duration("d", "1s")


class Tally(eddy.Operator):
    """Counts per key, reads back and rejects "bad" after writing."""

    def process(self, event, ctx):
        s = ctx.store("s")
        n = s.increment(event.key, 1)
        s.set(b"last", event.value)
        if s.get(b"last") != event.value or s.get_many([event.key])[0] != int_acc(n):
            raise eddy.Fatal("a read does not see the batch's write")
        if event.value == b"bad":
            raise eddy.BadInput("bad")
        if event.value == b"drop":
            s.delete(event.key)
        ctx.emit(eddy.Event(event.key, str(n)))


class StoreCacheTest(unittest.TestCase):
    def test_reads_see_writes_and_a_failed_batch_leaves_no_trace(self):
        h = Harness(Tally)
        out = h.process([eddy.Event("a", "x"), eddy.Event("a", "y"), eddy.Event("b", "z")])
        self.assertEqual([o.event.value for o in out], [b"1", b"2", b"1"])
        with self.assertRaises(BatchFailed) as e:
            h.process([eddy.Event("a", "x"), eddy.Event("c", "bad")])
        self.assertEqual(e.exception.index, 1)
        self.assertEqual(h.store("s"), {b"a": int_acc(2), b"b": int_acc(1), b"last": b"z"})
        out = h.process([eddy.Event("a", "drop"), eddy.Event("a", "x")])
        self.assertEqual([o.event.value for o in out], [b"3", b"1"])

    def test_a_scan_sees_cached_writes_and_counters_wrap(self):
        class Scan(eddy.Operator):
            def process(self, event, ctx):
                s = ctx.store("s")
                s.set(b"k1", b"v")
                s.set(b"k2", b"w")
                s.delete(b"k0")
                ctx.emit(eddy.Event(None, ",".join(k.decode() for k, _ in s.scan_prefix(b"k"))))
                ctx.emit(eddy.Event(None, str(s.increment(b"max", 1))))

        h = Harness(Scan)
        h.put("s", b"k0", b"gone")
        h.put("s", b"max", int_acc(2**63 - 1))
        out = h.process(eddy.Event(None, "go"))
        self.assertEqual([o.event.value for o in out], [b"k1,k2", str(-(2**63)).encode()])

    def test_increment_of_a_non_counter_is_bad_input(self):
        class Incr(eddy.Operator):
            def process(self, event, ctx):
                ctx.store("s").increment(b"k", 1)

        h = Harness(Incr)
        h.put("s", b"k", b"text")
        with self.assertRaises(eddy.BadInput) as e:
            h.process(eddy.Event(None, "x"))
        self.assertIn("not an 8-byte little-endian counter", e.exception.message)


class HarnessTest(unittest.TestCase):
    def test_a_failed_timer_stays_set_and_config_reads_as_from_a_spec(self):
        class Flaky(eddy.Operator):
            def init(self, config):
                self.pages = config.list("pages")
                self.on = config.bool("on")
                self.fail = True

            def process(self, event, ctx):
                ctx.set_timer(b"t", 10)
                ctx.store("s").set(b"k", b"v")

            def on_timer(self, key, at, ctx):
                ctx.store("s").delete(b"k")
                if self.fail:
                    self.fail = False
                    raise eddy.Fatal("not yet")
                ctx.emit(eddy.Event(None, ",".join(self.pages) + f" {self.on}"))

        h = Harness(Flaky, config={"pages": ["a", 1, True], "on": True})
        h.process(eddy.Event(None, "x"))
        with self.assertRaises(eddy.Fatal):
            h.advance_watermark(10)
        self.assertEqual(h.timers(), [(10, b"t")])
        self.assertEqual(h.store("s"), {b"k": b"v"})
        out = h.advance_watermark(10)
        self.assertEqual([o.event.value for o in out], [b"a,1,true True"])
        self.assertEqual(h.store("s"), {})

    def test_two_handles_on_one_store_share_its_writes(self):
        class Two(eddy.Operator):
            def process(self, event, ctx):
                eddy.Store("s").set(b"k", b"v")
                ctx.emit(eddy.Event(None, ctx.store("s").get(b"k") or b"none"))

        out = Harness(Two).process(eddy.Event(None, "x"))
        self.assertEqual([o.event.value for o in out], [b"v"])


class WindowsTest(unittest.TestCase):
    def test_add_returns_running_values_and_timers_close_windows(self):
        class PerMinute(eddy.Operator):
            def init(self, config):
                self.windows = Windows.tumbling(60_000)

            def process(self, event, ctx):
                added = self.windows.add(ctx, event, COUNT)
                ctx.emit(eddy.Event(event.key, str(COUNT.value(added.windows[0].acc))))

            def on_timer(self, key, at, ctx):
                for w in self.windows.on_timer(ctx, key, at):
                    ctx.emit(eddy.Event(w.key, f"closed {COUNT.value(w.acc)}").at(w.end - 1))

        h = Harness(PerMinute)
        out = h.process([eddy.Event("p", "", 1_000), eddy.Event("p", "", 2_000), eddy.Event("q", "", 3_000)])
        self.assertEqual([o.event.value for o in out], [b"1", b"2", b"1"])
        self.assertEqual([at for at, _ in h.timers()], [60_000, 60_000])
        out = h.advance_watermark(60_000)
        self.assertEqual(sorted((o.event.key, o.event.value, o.event.timestamp) for o in out),
                         [(b"p", b"closed 2", 59_999), (b"q", b"closed 1", 59_999)])
        self.assertEqual(h.timers(), [])

    def test_accumulator_helpers_round_trip(self):
        self.assertEqual(acc_int(int_acc(-5)), -5)
        self.assertEqual(acc_int(None), 0)
        self.assertEqual(acc_float(float_acc(0.25)), 0.25)
        self.assertEqual(acc_json(json_acc({"a": [1]})), {"a": [1]})
        self.assertIsNone(acc_json(None))

        class Sum(Aggregate):
            def add(self, acc, event):
                return float_acc(acc_float(acc) + float(event.value))

            def merge(self, a, b):
                return float_acc(acc_float(a) + acc_float(b))

        class Totals(eddy.Operator):
            def process(self, event, ctx):
                w = Windows.tumbling(10).add(ctx, event, Sum()).windows[0]
                ctx.emit(eddy.Event(event.key, str(acc_float(w.acc))))

        h = Harness(Totals)
        out = h.process([eddy.Event("k", "1.5", 1), eddy.Event("k", "2", 2)])
        self.assertEqual([o.event.value for o in out], [b"1.5", b"3.5"])


if __name__ == "__main__":
    unittest.main()


class Enrich(eddy.Operator):
    """Orders joined with the latest customer row."""

    def init(self, config):
        from eddy.join import TableJoin

        self.customers = TableJoin("customers", config.string("join", "inner"))

    def process(self, event, ctx):
        if event.input() == "customers":
            self.customers.update(ctx, event)
            return
        found = self.customers.join(ctx, event)
        if found is not None:
            ctx.emit(eddy.Event(event.key, event.value + b"|" + (found.row or b"null")))

    def on_timer(self, key, at, ctx):
        ctx.emit(eddy.Event(key, str(eddy.Event(None, b"").input())))


class JoinTest(unittest.TestCase):
    def test_inputs_name_their_events_and_a_table_join_sees_updates_and_deletes(self):
        h = Harness(Enrich)
        self.assertEqual(h.process(eddy.Event("c1", "o0")), [], "'source' is no table: an inner join drops it")
        h.process_from("customers", eddy.Event("c1", "Ada"))
        out = h.process_from("orders", eddy.Event("c1", "o1"))
        self.assertEqual([o.event.value for o in out], [b"o1|Ada"])
        h.process_from("customers", [eddy.Event("c1", "Ada L."), eddy.Event("c2", "Grace")])
        out = h.process_from("orders", [eddy.Event("c1", "o2"), eddy.Event("c2", "o3"), eddy.Event("c3", "o4")])
        self.assertEqual([o.event.value for o in out], [b"o2|Ada L.", b"o3|Grace"])
        h.process_from("customers", eddy.Event("c1", ""))
        self.assertEqual(h.process_from("orders", eddy.Event("c1", "o5")), [])
        with self.assertRaises(eddy.BadInput):
            h.process_from("customers", eddy.Event(None, "keyless"))

    def test_a_left_join_keeps_events_without_a_row_and_timers_have_no_input(self):
        h = Harness(Enrich, {"join": "left"})
        out = h.process_from("orders", eddy.Event("c9", "o1"))
        self.assertEqual([o.event.value for o in out], [b"o1|null"])
        with self.assertRaises(eddy.Fatal):
            Harness(Enrich, {"join": "outer"})

        class Timed(Enrich):
            def process(self, event, ctx):
                ctx.set_timer(b"t", 5)

        t = Harness(Timed)
        t.process_from("orders", eddy.Event("c1", "x"))
        self.assertEqual([o.event.value for o in t.advance_watermark(10)], [b"None"])


class Ads(eddy.Operator):
    """Impressions (left) and clicks (right) within 10 ms: ``l|r`` per pair."""

    def init(self, config):
        from eddy.join import WindowJoin

        self.join = WindowJoin("ads", 10, config.string("join", "inner"), before=config.int("before", 10))

    def _emit(self, ctx, pairs):
        show = lambda j: "-" if j is None else f"{j.value.decode()}@{j.timestamp}"  # noqa: E731
        for p in pairs:
            ctx.emit(eddy.Event(p.key, f"{show(p.left)}|{show(p.right)}"))

    def process(self, event, ctx):
        side = "right" if event.input() == "clicks" else "left"
        self._emit(ctx, self.join.add(ctx, side, event))

    def on_timer(self, key, at, ctx):
        pairs = self.join.on_timer(ctx, key)
        if pairs is not None:
            self._emit(ctx, pairs)


def _values(out):
    return [o.event.value.decode() for o in out]


class WindowJoinTest(unittest.TestCase):
    def test_records_within_the_window_meet_either_way_round_and_leave_with_the_watermark(self):
        h = Harness(Ads)
        self.assertEqual(h.process_from("impressions", eddy.Event("a", "i1", 100)), [])
        self.assertEqual(_values(h.process_from("clicks", eddy.Event("a", "c1", 105))), ["i1@100|c1@105"])
        self.assertEqual(h.process_from("clicks", eddy.Event("a", "c3", 111)), [])
        self.assertEqual(_values(h.process_from("impressions", eddy.Event("a", "i2", 112))),
                         ["i2@112|c1@105", "i2@112|c3@111"])
        self.assertEqual(h.advance_watermark(200), [])
        self.assertEqual((h.store("ads.left"), h.store("ads.right")), ({}, {}))
        self.assertEqual(h.process_from("clicks", eddy.Event("a", "c4", 113)), [])

    def test_left_and_outer_joins_emit_records_that_met_none_and_the_layout_is_the_rust_sdk_s(self):
        h = Harness(Ads, {"join": "left"})
        h.process_from("impressions", [eddy.Event("a", "i1", 100), eddy.Event("b", "i3", 120)])
        self.assertEqual(_values(h.process_from("clicks", eddy.Event("a", "c1", 104))), ["i1@100|c1@104"])
        self.assertEqual(h.advance_watermark(110), [])
        self.assertEqual(_values(h.advance_watermark(1_000)), ["i3@120|-"])
        h = Harness(Ads, {"join": "outer", "before": 0})
        h.process_from("clicks", eddy.Event("c", "c0", 95))
        h.process_from("impressions", eddy.Event("c", "i1", 100))
        # `len(key) key time` with the time's sign bit flipped; each record `met len value`.
        self.assertEqual(h.store("ads.left"), {b"\0\0\0\x01c" + (100 ^ (1 << 63)).to_bytes(8, "big"): b"\0\0\0\0\x02i1"})
        self.assertEqual(sorted(_values(h.advance_watermark(1_000))), ["-|c0@95", "i1@100|-"])
        with self.assertRaises(eddy.BadInput):
            h.process_from("clicks", eddy.Event(None, "x", 1))
