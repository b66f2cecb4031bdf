// The JavaScript SDK in Node, through its harness: typed config, the store cache,
// windows' running values and accumulator helpers. Run from guest-sdk/js:
// node --import ./src/testing-register.js --test test/ (the repository's test suite does).

import { test } from "node:test";
import assert from "node:assert/strict";
import { Acc, BadInput, COUNT, Config, Event, Fatal, Operator, Store, TableJoin, WindowJoin, Windows } from "../src/index.js";
import { BatchFailed, Harness } from "../src/testing.js";

const text = (b) => new TextDecoder().decode(b);
const values = (out) => out.map((o) => o.event.valueString());

test("typed config parses or names the key, the value and what was expected", () => {
  const c = new Config([["threshold", " 5"], ["ratio", "0.5"], ["on", "true"], ["window", "2m"],
                        ["pages", '["home", 7, true, 1.5]'], ["bad", "five"]]);
  assert.equal(c.int("threshold", 1), 5);
  assert.equal(c.int("missing", 1), 1);
  assert.equal(c.float("ratio"), 0.5);
  assert.equal(c.bool("on"), true);
  assert.equal(c.duration("window", "1s"), 120000);
  assert.equal(c.duration("missing", "250ms"), 250);
  assert.deepEqual(c.list("pages"), ["home", "7", "true", "1.5"]);
  assert.deepEqual(c.list("missing"), []);
  assert.equal(c.string("missing", "x"), "x");
  assert.equal(c.threshold, " 5");
  for (const [read, says] of [[(n) => c.int(n), "a whole number"], [(n) => c.float(n), "a number"],
                              [(n) => c.bool(n), "true or false"], [(n) => c.duration(n, "1s"), "a duration"],
                              [(n) => c.list(n), "a list"]]) {
    assert.throws(() => read("bad"), (e) => e instanceof Fatal && e.message.includes("`bad`") &&
                                            e.message.includes('"five"') && e.message.includes(says));
  }
  for (const bad of ["1_000", "5.0", "9007199254740993", "0x10"]) assert.throws(() => new Config([["n", bad]]).int("n"));
  for (const bad of ["Infinity", "NaN", "1_0", "0x10", ""]) assert.throws(() => new Config([["n", bad]]).float("n"));
  for (const bad of ["5 parsecs", "-1s", "99999999999999999999d"]) assert.throws(() => new Config([["d", bad]]).duration("d", "1s"));
});

class Tally extends Operator {
  process(event, ctx) {
    const s = ctx.store("s");
    const n = s.increment(event.key, 1);
    s.set("last", event.value);
    if (text(s.get("last")) !== event.valueString() || Acc.int(s.getMany([event.key])[0]) !== n) {
      throw new Fatal("a read does not see the batch's write");
    }
    if (event.valueString() === "bad") throw new BadInput("bad");
    if (event.valueString() === "drop") s.delete(event.key);
    ctx.emit(new Event(event.key, String(n)));
  }
}

test("reads see writes and a failed batch leaves no trace", () => {
  const h = new Harness(Tally);
  assert.deepEqual(values(h.process([new Event("a", "x"), new Event("a", "y"), new Event("b", "z")])), ["1", "2", "1"]);
  assert.throws(() => h.process([new Event("a", "x"), new Event("c", "bad")]), (e) => e instanceof BatchFailed && e.index === 1);
  assert.deepEqual(h.store("s").map(([k, v]) => [text(k), k.length === 4 ? text(v) : Acc.int(v)]), [["a", 2], ["b", 1], ["last", "z"]]);
  assert.deepEqual(values(h.process([new Event("a", "drop"), new Event("a", "x")])), ["3", "1"]);
});

test("a value handed to the store or read from it is a copy", () => {
  class Copies extends Operator {
    process(event, ctx) {
      const s = ctx.store("s");
      const key = new Uint8Array([107]);
      s.set(key, "v1");
      key[0] = 108; // the stored key stays "k"
      s.get("k")[0] = 0; // the stored value stays "v1"
      ctx.emit(new Event(null, text(s.get("k"))));
    }
  }
  const h = new Harness(Copies);
  assert.deepEqual(values(h.process(new Event(null, "x"))), ["v1"]);
  assert.deepEqual(h.store("s").map(([k, v]) => [text(k), text(v)]), [["k", "v1"]]);
});

test("a scan sees cached writes, and counters past 2^53 are exact", () => {
  class Scan extends Operator {
    process(event, ctx) {
      const s = ctx.store("s");
      s.set("k1", "v");
      s.set("k2", "w");
      s.delete("k0");
      ctx.emit(new Event(null, [...s.scanPrefix("k")].map(([k]) => text(k)).join(",")));
      s.increment("big", 1);
      s.increment("big", 1);
    }
  }
  const h = new Harness(Scan);
  h.state.stores.set("s", new Map([["k0", new Uint8Array([1])], ["big", Acc.fromInt(2 ** 53 - 1)]]));
  assert.deepEqual(values(h.process(new Event(null, "go"))), ["k1,k2"]);
  const big = h.store("s").find(([k]) => text(k) === "big")[1];
  assert.equal(new DataView(big.buffer, big.byteOffset, 8).getBigInt64(0, true), 2n ** 53n + 1n);
});

test("windows return running values and timers close them", () => {
  class PerMinute extends Operator {
    init() {
      this.windows = Windows.tumbling(60000);
    }
    process(event, ctx) {
      const added = this.windows.add(ctx, event, COUNT);
      ctx.emit(new Event(event.key, String(COUNT.value(added.windows[0].acc))));
    }
    onTimer(key, at, ctx) {
      for (const w of this.windows.onTimer(ctx, key, at)) ctx.emit(new Event(w.key, `closed ${COUNT.value(w.acc)}`, w.end - 1));
    }
  }
  const h = new Harness(PerMinute);
  assert.deepEqual(values(h.process([new Event("p", "", 1000), new Event("p", "", 2000), new Event("q", "", 3000)])), ["1", "2", "1"]);
  assert.deepEqual(h.timers().map(([at]) => at), [60000, 60000]);
  const closed = h.advanceWatermark(60000).map((o) => [o.event.keyString(), o.event.valueString(), o.event.timestamp]).sort();
  assert.deepEqual(closed, [["p", "closed 2", 59999], ["q", "closed 1", 59999]]);
  assert.deepEqual(h.timers(), []);
});

test("accumulator helpers round-trip", () => {
  assert.equal(Acc.int(Acc.fromInt(-5)), -5);
  assert.equal(Acc.int(null), 0);
  assert.equal(Acc.float(Acc.fromFloat(0.25)), 0.25);
  assert.deepEqual(Acc.json(Acc.fromJson({ a: [1] })), { a: [1] });
  assert.equal(Acc.json(null), null);
});

test("a failed timer stays set, and config reads as from a spec", () => {
  class Flaky extends Operator {
    init(config) {
      this.pages = config.list("pages");
      this.on = config.bool("on");
      this.fail = true;
    }
    process(event, ctx) {
      ctx.setTimer("t", 10);
      ctx.store("s").set("k", "v");
    }
    onTimer(key, at, ctx) {
      ctx.store("s").delete("k");
      if (this.fail) {
        this.fail = false;
        throw new Fatal("not yet");
      }
      ctx.emit(new Event(null, this.pages.join(",") + " " + this.on));
    }
  }
  const h = new Harness(Flaky, { pages: ["a", 1, true], on: true });
  h.process(new Event(null, "x"));
  assert.throws(() => h.advanceWatermark(10), Fatal);
  assert.deepEqual(h.timers().map(([at, key]) => [at, text(key)]), [[10, "t"]]);
  assert.equal(h.store("s").length, 1);
  assert.deepEqual(values(h.advanceWatermark(10)), ["a,1,true true"]);
  assert.equal(h.store("s").length, 0);
});

test("two handles on one store share its writes; a key named get still reads", () => {
  class Two extends Operator {
    process(event, ctx) {
      new Store("s").set("k", "v");
      ctx.emit(new Event(null, ctx.store("s").getString("k") ?? "none"));
    }
  }
  assert.deepEqual(values(new Harness(Two).process(new Event(null, "x"))), ["v"]);
  const c = new Config([["get", "5"]]);
  assert.equal(c.int("get", 0), 5);
});


test("events name their input; a timer call has none", () => {
  class Inputs extends Operator {
    process(event, ctx) {
      ctx.emit(new Event(event.key, String(event.input())));
      ctx.setTimer("t", 5);
    }
    onTimer(key, at, ctx) {
      ctx.emit(new Event(key, String(new Event(null, "").input())));
    }
  }
  const h = new Harness(Inputs);
  const text = (out) => out.map((o) => new TextDecoder().decode(o.event.value));
  assert.deepEqual(text(h.process(new Event("k", "v"))), ["source"]);
  assert.deepEqual(text(h.processFrom("customers", [new Event("k", "v"), new Event("j", "w")])), ["customers", "customers"]);
  assert.deepEqual(text(h.advanceWatermark(10)), ["null"]);
  assert.deepEqual(text(h.process(new Event("k", "v"))), ["source"]);
});

test("a table join sees updates and deletes; a left join keeps events without a row", () => {
  class Enrich extends Operator {
    init(config) {
      this.customers = new TableJoin("customers", config.string("join", "inner"));
    }
    process(event, ctx) {
      if (event.input() === "customers") return this.customers.update(ctx, event);
      const found = this.customers.join(ctx, event);
      if (found === null) return;
      const row = found.row === null ? "null" : new TextDecoder().decode(found.row);
      ctx.emit(new Event(event.key, `${new TextDecoder().decode(event.value)}|${row}`));
    }
  }
  const text = (out) => out.map((o) => new TextDecoder().decode(o.event.value));
  const h = new Harness(Enrich);
  h.processFrom("customers", new Event("c1", "Ada"));
  assert.deepEqual(text(h.processFrom("orders", [new Event("c1", "o1"), new Event("c2", "o2")])), ["o1|Ada"]);
  h.processFrom("customers", [new Event("c1", "Ada L."), new Event("c2", "Grace")]);
  assert.deepEqual(text(h.processFrom("orders", [new Event("c1", "o3"), new Event("c2", "o4")])), ["o3|Ada L.", "o4|Grace"]);
  h.processFrom("customers", new Event("c1", ""));
  assert.deepEqual(text(h.processFrom("orders", new Event("c1", "o5"))), []);
  assert.throws(() => h.processFrom("customers", new Event(null, "x")), BadInput);
  const left = new Harness(Enrich, { join: "left" });
  assert.deepEqual(text(left.processFrom("orders", new Event("c9", "o1"))), ["o1|null"]);
  assert.throws(() => new Harness(Enrich, { join: "outer" }));
});

/** Impressions (left) and clicks (right) within 10 ms: `l|r` per pair, `-` for a side
 * that met none (the Rust and Python SDKs' test operator). */
class Ads extends Operator {
  init(config) {
    this.join = new WindowJoin("ads", 10, {
      kind: config.string("join", "inner"),
      before: config.int("before", 10),
      after: config.int("after", 10),
      grace: config.int("grace", 0),
    });
  }
  emit(ctx, pairs) {
    const show = (j) => (j === null ? "-" : `${text(j.value)}@${j.timestamp}`);
    for (const p of pairs) ctx.emit(new Event(p.key, `${show(p.left)}|${show(p.right)}`));
  }
  process(event, ctx) {
    this.emit(ctx, this.join.add(ctx, event.input() === "clicks" ? "right" : "left", event));
  }
  onTimer(key, at, ctx) {
    const pairs = this.join.onTimer(ctx, key);
    if (pairs !== null) this.emit(ctx, pairs);
  }
}

const bytes = (...parts) => Uint8Array.from(parts.flatMap((p) => (typeof p === "string" ? [...p].map((c) => c.charCodeAt(0)) : [...p])));
const I64_MIN = -(2 ** 63);

test("a windowed join pairs records within the window either way round; they leave with the watermark", () => {
  const h = new Harness(Ads);
  assert.deepEqual(h.processFrom("impressions", new Event("a", "i1", 100)), []);
  assert.deepEqual(values(h.processFrom("clicks", new Event("a", "c1", 105))), ["i1@100|c1@105"]);
  // Another key, and a click too late for i1.
  assert.deepEqual(h.processFrom("clicks", new Event("b", "c2", 106)), []);
  assert.deepEqual(h.processFrom("clicks", new Event("a", "c3", 111)), []);
  assert.deepEqual(values(h.processFrom("impressions", new Event("a", "i2", 112))), ["i2@112|c1@105", "i2@112|c3@111"]);
  assert.deepEqual(h.advanceWatermark(200), []);
  assert.deepEqual([h.store("ads.left"), h.store("ads.right"), h.timers()], [[], [], []]);
  assert.deepEqual(h.processFrom("clicks", new Event("a", "c4", 113)), []);
});

test("left and outer windowed joins emit the records that met none when their window closes", () => {
  const h = new Harness(Ads, { join: "left" });
  h.processFrom("impressions", [new Event("a", "i1", 100), new Event("b", "i3", 120)]);
  assert.deepEqual(values(h.processFrom("clicks", new Event("a", "c1", 104))), ["i1@100|c1@104"]);
  assert.deepEqual(h.advanceWatermark(110), []);
  assert.deepEqual(values(h.advanceWatermark(1000)), ["i3@120|-"]); // i1 met c1; clicks never alone
  const o = new Harness(Ads, { join: "outer", before: 0 });
  o.processFrom("clicks", new Event("c", "c0", 95));
  o.processFrom("impressions", new Event("c", "i1", 100));
  assert.deepEqual(values(o.advanceWatermark(1000)).sort(), ["-|c0@95", "i1@100|-"]);
});

test("a windowed join's before and after bounds differ; grace delays the close", () => {
  const h = new Harness(Ads, { before: 2, after: 5 }); // clicks in [l - 2, l + 5]
  h.processFrom("impressions", new Event("a", "i", 100));
  const clicks = (key, times) => times.map((t) => values(h.processFrom("clicks", new Event(key, `c${t}`, t))));
  assert.deepEqual(clicks("a", [97, 98, 105, 106]), [[], ["i@100|c98@98"], ["i@100|c105@105"], []]);
  clicks("b", [197, 198, 205, 206]);
  assert.deepEqual(values(h.processFrom("impressions", new Event("b", "i", 200))), ["i@200|c198@198", "i@200|c205@205"]);

  const g = new Harness(Ads, { join: "left", grace: 5 });
  g.processFrom("impressions", [new Event("a", "i1", 100), new Event("b", "i2", 100)]);
  assert.deepEqual(g.timers().map(([at]) => at), [116, 116]); // 100 + 10 + 5 + 1
  assert.deepEqual(g.advanceWatermark(115), []);
  // Late, but within the grace: i1 still waits.
  assert.deepEqual(values(g.processFrom("clicks", new Event("a", "c", 108))), ["i1@100|c@108"]);
  assert.deepEqual(values(g.advanceWatermark(116)), ["i2@100|-"]);
});

test("a windowed join keeps the Rust and Python SDKs' store layout and timers", () => {
  const h = new Harness(Ads, { join: "outer", before: 0 });
  h.processFrom("clicks", new Event("c", "c0", 95));
  h.processFrom("impressions", new Event("c", "i1", 100));
  // `len(key) key time` with the time's sign bit flipped; each record `met len value`.
  const left = bytes([0, 0, 0, 1], "c", [0x80, 0, 0, 0, 0, 0, 0, 100]);
  const right = bytes([0, 0, 0, 1], "c", [0x80, 0, 0, 0, 0, 0, 0, 95]);
  assert.deepEqual(h.store("ads.left"), [[left, bytes([0, 0, 0, 0, 2], "i1")]]);
  assert.deepEqual(h.store("ads.right"), [[right, bytes([0, 0, 0, 0, 2], "c0")]]);
  // A timer per entry, `\0wjoin\0<name>\0` and the side, once the window (and grace) closed.
  assert.deepEqual(h.timers(), [[96, bytes("\0wjoin\0ads\0r", right)], [111, bytes("\0wjoin\0ads\0l", left)]]);
  // Two records of one key and time share an entry; a met one is flagged.
  h.processFrom("clicks", new Event("c", "c1", 100));
  h.processFrom("impressions", new Event("c", "i2", 100));
  assert.deepEqual(h.store("ads.left"), [[left, bytes([1, 0, 0, 0, 2], "i1", [1, 0, 0, 0, 2], "i2")]]);

  // Times before zero sort first, and bounds saturate at the s64 range.
  const s = new Harness(Ads);
  s.processFrom("impressions", [new Event("k", "lo", I64_MIN), new Event("k", "neg", -1), new Event("k", "hi", 2 ** 63 - 1024)]);
  assert.deepEqual(s.store("ads.left").map(([k]) => Array.from(k.slice(5))), [
    [0, 0, 0, 0, 0, 0, 0, 0],
    [0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
    [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfc, 0x00],
  ]);
  assert.deepEqual(s.timers().map(([at]) => at), [I64_MIN + 11, 10, 2 ** 63 - 1024]);
  assert.deepEqual(values(s.processFrom("clicks", new Event("k", "c", I64_MIN))), [`lo@${I64_MIN}|c@${I64_MIN}`]);
});

test("a windowed join refuses keyless records, bad kinds and sides, and damaged state", () => {
  const h = new Harness(Ads);
  assert.throws(() => h.processFrom("clicks", new Event(null, "x", 1)), (e) => e instanceof BadInput && /no key/.test(e.message));
  assert.throws(() => new Harness(Ads, { join: "full" }), (e) => e instanceof Fatal && /"full"/.test(e.message));
  const join = new WindowJoin("ads", 10);
  assert.throws(() => join.add(h.ctx, "middle", new Event("a", "x", 1)), (e) => e instanceof Fatal && /"middle"/.test(e.message));
  assert.equal(join.onTimer(h.ctx, "some other timer"), null);
  const notOwn = (e) => e instanceof Fatal && /is not its own/.test(e.message);
  assert.throws(() => join.onTimer(h.ctx, "\0wjoin\0ads\0x"), notOwn);
  assert.throws(() => join.onTimer(h.ctx, bytes("\0wjoin\0ads\0l", [0, 0, 0, 9], "c")), notOwn);
  const entry = bytes([0, 0, 0, 1], "a", [0x80, 0, 0, 0, 0, 0, 0, 100]);
  h.state.stores.set("ads.left", new Map([[String.fromCharCode(...entry), bytes([0, 0, 0, 0, 9], "short")]]));
  assert.throws(() => h.processFrom("clicks", new Event("a", "c", 100)), (e) => e instanceof Fatal && /damaged/.test(e.message));
});
