// Event-time windows over a store and timers: tumbling, sliding and session windows per
// event key, as in the Rust SDK's `eddy_guest::window` (same store layout and timers, so
// the results are the same):
//
//   import { Windows, COUNT } from "eddy";
//   this.windows = Windows.tumbling(60000);
//   process(event, ctx) { this.windows.add(ctx, event, COUNT); }
//   onTimer(key, at, ctx) {
//     for (const w of this.windows.onTimer(ctx, key, at)) ctx.emit(...);
//   }
//
// A window [start, end) closes once the watermark reaches `end`. With
// `allowedLateness(ms)` a closed window is kept that much longer and a late event
// re-emits it (`update` set); later events are dropped (`dropped` in what `add` returns).
// `add` also returns `windows`: every window the event went into, with its running
// accumulator (`COUNT.value(w.acc)` is the count so far). `Acc` reads and writes
// accumulators for your own aggregates without DataView or BigInt.

import { Fatal } from "./errors.js";
import { concat } from "./flat.js";
import { decode as decode8, encode as encode8 } from "./utf8.js";

const FLIP = 1n << 63n;

/** Counts events; the accumulator is an 8-byte little-endian integer. */
export const COUNT = {
  value(acc) {
    if (!acc || acc.length !== 8) return 0;
    return Number(new DataView(acc.buffer, acc.byteOffset, 8).getBigInt64(0, true));
  },
  add(acc, _event) {
    return int64(acc === null ? 1 : COUNT.value(acc) + 1);
  },
  merge(a, b) {
    return int64(COUNT.value(a) + COUNT.value(b));
  },
};

/** Accumulator bytes for your own aggregates: numbers and JSON in and out. */
export const Acc = {
  /** An 8-byte little-endian integer as a number (0 for null). */
  int(acc) {
    return COUNT.value(acc);
  },
  fromInt(n) {
    return int64(n);
  },
  /** An 8-byte little-endian float (0 for null). */
  float(acc) {
    if (!acc || acc.length !== 8) return 0;
    return new DataView(acc.buffer, acc.byteOffset, 8).getFloat64(0, true);
  },
  fromFloat(x) {
    const out = new Uint8Array(8);
    new DataView(out.buffer).setFloat64(0, x, true);
    return out;
  },
  /** A JSON value (null for null). */
  json(acc) {
    return acc === null || acc === undefined ? null : JSON.parse(decode8(acc));
  },
  fromJson(value) {
    return encode8(JSON.stringify(value));
  },
};

function int64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigInt64(0, BigInt(n), true);
  return out;
}

function prefix(key) {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, key.length, false);
  return concat(len, key);
}

function entryKey(key, start) {
  const s = new Uint8Array(8);
  new DataView(s.buffer).setBigUint64(0, BigInt.asUintN(64, BigInt(start)) ^ FLIP, false);
  return concat(prefix(key), s);
}

function splitEntryKey(id) {
  if (id.length < 4) return null;
  const view = new DataView(id.buffer, id.byteOffset, id.length);
  const n = view.getUint32(0, false);
  if (id.length !== 4 + n + 8) return null;
  const raw = view.getBigUint64(4 + n, false) ^ FLIP;
  return [id.slice(4, 4 + n), Number(BigInt.asIntN(64, raw))];
}

function encode(end, closed, acc) {
  return concat(int64(end), Uint8Array.of(closed ? 1 : 0), acc);
}

function decode(v) {
  if (v.length < 9) throw new Fatal(`window store: an entry of ${v.length} bytes is not a window`);
  const end = Number(new DataView(v.buffer, v.byteOffset, 8).getBigInt64(0, true));
  return { end, closed: v[8] !== 0, acc: v.slice(9) };
}

function sameBytes(a, b) {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Windows of one kind over a store (`windows` unless `store(name)` says). */
export class Windows {
  constructor(kind, size, slide, gap) {
    this.kind = kind;
    this.size = size;
    this.slide = slide;
    this.gap = gap;
    this.lateness = 0;
    this.storeName = "windows";
  }

  static tumbling(size) {
    const s = Math.max(size, 1);
    return new Windows("tumbling", s, s, 0);
  }

  static sliding(size, slide) {
    return new Windows("sliding", Math.max(size, 1), Math.max(slide, 1), 0);
  }

  static session(gap) {
    return new Windows("session", 0, 0, Math.max(gap, 1));
  }

  allowedLateness(ms) {
    this.lateness = Math.max(ms, 0);
    return this;
  }

  store(name) {
    this.storeName = name;
    return this;
  }

  /** Puts `event` (by its key and timestamp) into its windows, arming their timers. */
  add(ctx, event, agg) {
    const store = ctx.store(this.storeName);
    const key = event.key ?? new Uint8Array(0);
    const ts = event.timestamp;
    const watermark = ctx.watermark();
    const added = { updates: [], windows: [], dropped: false };
    let windows;
    if (this.kind === "session") {
      if (ts + this.gap + this.lateness <= watermark) {
        added.dropped = true;
        return added;
      }
      windows = [this.sessionFor(ctx, key, ts, agg)];
    } else {
      windows = [];
      let start = Math.floor(ts / this.slide) * this.slide;
      while (start > ts - this.size) {
        windows.push([start, start + this.size, null]);
        start -= this.slide;
      }
    }
    let any = false;
    for (const [start, end, merged] of windows) {
      if (end + this.lateness <= watermark) continue;
      any = true;
      const id = entryKey(key, start);
      const previous = store.get(id);
      let closed = false;
      let acc;
      if (previous !== null) {
        const p = decode(previous);
        closed = p.closed;
        acc = agg.add(merged !== null ? merged : p.acc, event);
      } else {
        acc = agg.add(merged, event);
      }
      store.set(id, encode(end, closed, acc));
      added.windows.push({ key, start, end, acc, update: closed });
      if (closed) {
        added.updates.push({ key, start, end, acc, update: true });
        ctx.setTimer(id, end + this.lateness);
      } else {
        ctx.setTimer(id, end);
      }
    }
    added.dropped = !any;
    return added;
  }

  /** The results of windows closing at this timer (other timers are ignored). */
  onTimer(ctx, key, at) {
    const split = splitEntryKey(key);
    if (split === null) return [];
    const [eventKey, start] = split;
    const store = ctx.store(this.storeName);
    const value = store.get(key);
    if (value === null) return [];
    const { end, closed, acc } = decode(value);
    if (closed) {
      if (at >= end + this.lateness) store.delete(key);
      return [];
    }
    if (at < end) return [];
    if (this.lateness > 0) {
      store.set(key, encode(end, true, acc));
      ctx.setTimer(key, end + this.lateness);
    } else {
      store.delete(key);
    }
    return [{ key: eventKey, start, end, acc, update: false }];
  }

  sessionFor(ctx, key, ts, agg) {
    const store = ctx.store(this.storeName);
    let start = ts;
    let end = ts + this.gap;
    const parts = []; // [id, start, entry] in store (start) order
    for (;;) {
      const before = [start, end];
      for (const [id, value] of store.scanPrefix(prefix(key))) {
        const split = splitEntryKey(id);
        if (split === null) throw new Fatal("window store: a key that is not a window's");
        const s = split[1];
        const e = decode(value);
        if (s < end && start < e.end && !parts.some(([p]) => sameBytes(p, id))) {
          parts.push([id, s, e]);
        }
      }
      for (const [, s, e] of parts) {
        start = Math.min(start, s);
        end = Math.max(end, e.end);
      }
      if (start === before[0] && end === before[1]) break;
    }
    parts.sort((a, b) => a[1] - b[1]);
    const singleSameStart = parts.length === 1 && parts[0][1] === start;
    let merged = null;
    for (const [id, , e] of parts) {
      ctx.deleteTimer(id, e.closed ? e.end + this.lateness : e.end);
      if (!singleSameStart) store.delete(id);
      merged = merged === null ? e.acc : agg.merge(merged, e.acc);
    }
    return singleSameStart ? [start, end, null] : [start, end, merged];
  }
}
