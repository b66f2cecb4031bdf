// Test operators in Node (`node:test`), without building a component, as Kafka Streams'
// TopologyTestDriver does: the operator runs against an in-memory host with stores,
// timers and a watermark you move, and what it emits is returned.
//
//   // app.test.js — run with: node --import eddy/src/testing-register.js --test
//   import { test } from "node:test";
//   import assert from "node:assert/strict";
//   import { Event } from "eddy";
//   import { Harness } from "eddy/src/testing.js";
//   import { WordCount } from "./app.js";
//
//   test("counts words", () => {
//     const h = new Harness(WordCount, { lowercase: "true" });
//     const out = h.process(new Event(null, "a A b"));
//     assert.deepEqual(out.map((o) => [o.event.keyString(), o.event.valueString()]), [["a", "1"], ["a", "2"], ["b", "1"]]);
//   });
//
// A batch that fails leaves no trace in state or timers, as on a server.

import { Context, Event, _takeInput } from "./api.js";
import { Config } from "./config.js";
import { EddyError } from "./errors.js";
import { MemoryState, dueTimer, host } from "./memory-host.js";

/** A batch failed at record `index` with `error` (a BadInput or Fatal); it left no trace. */
export class BatchFailed extends Error {
  constructor(index, error) {
    super(`record ${index}: ${error.name}: ${error.message}`);
    this.index = index;
    this.error = error;
  }
}

/** A config value as a spec hands it over: text, numbers and booleans as written, arrays
 * and objects as JSON. */
function configText(key, value) {
  if (value === null || value === undefined) throw new TypeError(`config ${key} is ${value}: give a string, number, boolean, array or object`);
  return typeof value === "object" ? JSON.stringify(value) : String(value);
}

/** What the operator emits, with timestamps resolved as the host resolves them. */
class Collect {
  constructor() {
    this.outputs = [];
  }

  clear() {
    this.outputs = [];
  }

  push(port, event, currentTimestamp) {
    const ts = event.timestamp === null || event.timestamp === undefined ? currentTimestamp : event.timestamp;
    const e = new Event(event.key, event.value, Number(ts), event.headers.map(([n, v]) => [n, v]));
    this.outputs.push({ port, event: e });
  }
}

/** Drives one operator like a task of a pipeline, in memory. Each harness starts from
 * empty state. Outputs are `{port, event}` (`port` null for the main output). */
export class Harness {
  constructor(operator, config = {}, info = null) {
    this.state = host.state = new MemoryState();
    if (info) this.state.info = info;
    // An operator class, an instance, or the module's `handler` (which names its class).
    const cls = operator && operator.operator ? operator.operator : operator;
    this.op = typeof cls === "function" ? new cls() : cls;
    this.op.init(new Config(Object.entries(config).map(([k, v]) => [k, configText(k, v)])));
    this.out = new Collect();
    this.ctx = new Context(this.out);
  }

  get stateVersion() {
    return this.op.constructor.stateVersion ?? 1;
  }

  call(body, before = null) {
    host.state = this.state;
    if (before === null) before = this.state.snapshot();
    this.out.clear();
    this.ctx._begin(null);
    try {
      body();
      this.ctx._flush(false);
    } catch (e) {
      this.ctx._discard();
      this.state.restore(before);
      throw e;
    }
    return this.out.outputs;
  }

  one(event) {
    _takeInput(true);
    this.ctx.currentTimestamp = event.timestamp ?? 0;
    this.op.process(event, this.ctx);
  }

  /** Handles one record (or an array of them, as one batch) and returns what it emitted.
   * A record that throws BadInput or Fatal throws it here (BatchFailed for a batch). */
  process(events) {
    if (!Array.isArray(events)) return this.call(() => this.one(events));
    return this.call(() =>
      events.forEach((e, index) => {
        try {
          this.one(e);
        } catch (err) {
          throw err instanceof EddyError ? new BatchFailed(index, err) : err;
        }
      }),
    );
  }

  /** Handles records of pipeline input `input` (what `event.input()` answers; "source"
   * with `process`). */
  processFrom(input, events) {
    this.state.input = input;
    try {
      return this.process(events);
    } finally {
      this.state.input = "source";
    }
  }

  /** Moves the watermark to `watermark` (never back) and fires every timer due, in time
   * order; returns what the timers emitted. */
  advanceWatermark(watermark) {
    this.state.watermark = Math.max(this.state.watermark, watermark);
    const outputs = [];
    for (;;) {
      host.state = this.state;
      // Taken before the timer leaves the set: a failed call puts it back.
      const before = this.state.snapshot();
      const due = dueTimer(this.state.watermark);
      if (due === null) return outputs;
      const [at, key] = due;
      outputs.push(
        ...this.call(() => {
          _takeInput(false);
          this.ctx.currentTimestamp = at;
          this.op.onTimer(key, at, this.ctx);
        }, before),
      );
    }
  }

  /** Every entry of store `name` as [key, value] Uint8Arrays, in key order. */
  store(name) {
    const s = this.state.stores.get(name) ?? new Map();
    return [...s.keys()].sort().map((k) => [Uint8Array.from(k, (c) => c.charCodeAt(0)), s.get(k)]);
  }

  /** Pending timers as [at, key], in firing order. */
  timers() {
    const chars = (key) => String.fromCharCode(...key);
    return [...this.state.timers.values()].sort((a, b) => a[0] - b[0] || (chars(a[1]) < chars(b[1]) ? -1 : 1));
  }

  /** What the operator logged, as [level, message]. */
  logs() {
    return [...this.state.logs];
  }
}
