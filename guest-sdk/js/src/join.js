// Joins over stores: plain library code, so their state survives restarts, savepoints
// and hot upgrades like any other (the Rust and Python SDKs' `TableJoin` and
// `WindowJoin`, with the same store layout).
//
// A stream-table join keeps a table input's latest row per key:
//
//   const customers = new TableJoin("customers", "left");
//   process(event, ctx) {
//     if (event.input() === "customers") return customers.update(ctx, event);
//     const found = customers.join(ctx, event); // null: an inner join drops the event
//     if (found !== null) ctx.emit(new Event(event.key, found.row ?? "null"));
//   }
//
// A windowed stream-stream join pairs records of two inputs with the same key and close
// times; pairs are `{ key, left, right }`, each side `{ value, timestamp }` or null (a
// left or outer join's record that met none):
//
//   const ads = new WindowJoin("ads", 600000, { kind: "left", before: 0 });
//   process(event, ctx) {
//     const side = event.input() === "clicks" ? "right" : "left";
//     for (const p of ads.add(ctx, side, event)) ctx.emit(new Event(p.key, p.right.value)); // a click
//   }
//   onTimer(key, at, ctx) {
//     // null: not this join's timer; else impressions no click met (a left join)
//     for (const p of ads.onTimer(ctx, key) ?? []) ctx.emit(new Event(p.key, p.left.value));
//   }

import { BadInput, Fatal } from "./errors.js";
import { bytesOf, concat } from "./flat.js";
import { encode as encode8 } from "./utf8.js";

export class TableJoin {
  /** A join with the table in store `store`; `kind` is "inner" (only events whose key
   * has a row) or "left" (every event). */
  constructor(store, kind = "inner") {
    if (kind !== "inner" && kind !== "left") {
      throw new Fatal(`join kind ${JSON.stringify(kind)}: expected "inner" or "left"`);
    }
    this.store = store;
    this.kind = kind;
  }

  /** Applies a record of the table input: its value becomes the key's row; an empty
   * value deletes it (a tombstone). A keyless record is bad input. */
  update(ctx, event) {
    if (event.key === null) throw new BadInput(`a record of table ${JSON.stringify(this.store)} has no key`);
    const table = ctx.store(this.store);
    if (event.value.length === 0) table.delete(event.key);
    else table.set(event.key, event.value);
  }

  /** The row a stream event joins with: null when an inner join drops it (no row, or no
   * key), else `{ row }` with the row's bytes (or null: a left join's event without one). */
  join(ctx, event) {
    const row = event.key === null ? null : this.row(ctx, event.key);
    if (row === null && this.kind === "inner") return null;
    return { row };
  }

  /** The table's current row under `key` (a Uint8Array), or null. */
  row(ctx, key) {
    return ctx.store(this.store).get(key) ?? null;
  }
}

// ---- Windowed stream-stream joins ------------------------------------------------------

const WINDOW_KINDS = ["inner", "left", "outer"];
/** Timer keys of a join start with this and its name, so `onTimer` knows its own. */
const TIMER_TAG = Uint8Array.of(0, 0x77, 0x6a, 0x6f, 0x69, 0x6e, 0); // "\0wjoin\0"
const FLIP = 1n << 63n;
const I64_MIN = -(1n << 63n);
const I64_MAX = (1n << 63n) - 1n;
/** The largest number below 2^63: s64's largest value rounds up to 2^63 as a number,
 * which an s64 timer time cannot hold. */
const TIMER_MAX = 2 ** 63 - 1024;

/** `v` (a BigInt) within the s64 range: times saturate there, as in the Rust SDK. */
function sat(v) {
  return v < I64_MIN ? I64_MIN : v > I64_MAX ? I64_MAX : v;
}

function u32be(n) {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, n, false);
  return b;
}

function readU32be(b, at) {
  return new DataView(b.buffer, b.byteOffset, b.length).getUint32(at, false);
}

/** `len(key) key`: a key's records sort together, by time. */
function keyPrefix(key) {
  return concat(u32be(key.length), key);
}

/** The time with its sign bit flipped, so that byte order is time order. */
function entryKey(prefix, at) {
  const t = new Uint8Array(8);
  new DataView(t.buffer).setBigUint64(0, BigInt.asUintN(64, at) ^ FLIP, false);
  return concat(prefix, t);
}

function entryTime(entry) {
  const raw = new DataView(entry.buffer, entry.byteOffset, entry.length).getBigUint64(entry.length - 8, false);
  return Number(BigInt.asIntN(64, raw ^ FLIP));
}

function startsWith(b, prefix) {
  if (b.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (b[i] !== prefix[i]) return false;
  return true;
}

/** The records at one time: each `met (1 byte) len (4, big-endian) value`. */
function encodeRecords(records) {
  const out = new Uint8Array(records.reduce((n, [, v]) => n + 5 + v.length, 0));
  const view = new DataView(out.buffer);
  let at = 0;
  for (const [met, v] of records) {
    out[at] = met ? 1 : 0;
    view.setUint32(at + 1, v.length, false);
    out.set(v, at + 5);
    at += 5 + v.length;
  }
  return out;
}

function decodeRecords(b, name) {
  const out = [];
  let i = 0;
  while (i < b.length) {
    const n = i + 5 <= b.length ? readU32be(b, i + 1) : Infinity;
    if (i + 5 + n > b.length) throw new Fatal(`join ${name}: a stored record is damaged`);
    out.push([b[i] !== 0, b.slice(i + 5, i + 5 + n)]);
    i += 5 + n;
  }
  return out;
}

function hex(b) {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/**
 * A windowed stream-stream join, as Kafka Streams' KStream-KStream join: a right record
 * at `r` meets a left record of the same key at `l` when `l - before <= r <= l + after`
 * (both `window` unless given, in ms). `kind`: "inner" (only pairs), "left" (and left
 * records that met none, when their window closes) or "outer" (and records of either
 * side that met none). Records wait in the stores `<name>.left` and `<name>.right` (the
 * Rust and Python SDKs' layout) until the watermark passes their window and `grace`.
 *
 * What `add` and `onTimer` return are pairs `{ key, left, right }`: `key` a Uint8Array,
 * `left` and `right` each `{ value, timestamp }` (a Uint8Array and a number) or null.
 */
export class WindowJoin {
  constructor(name, window, { kind = "inner", before = null, after = null, grace = 0 } = {}) {
    if (!WINDOW_KINDS.includes(kind)) {
      throw new Fatal(`join kind ${JSON.stringify(kind)}: expected "inner", "left" or "outer"`);
    }
    this.name = name;
    this.kind = kind;
    // Whole ms: the bounds take part in BigInt sums.
    this.before = Math.max(0, Math.trunc(before ?? window));
    this.after = Math.max(0, Math.trunc(after ?? window));
    this.grace = Math.max(0, Math.trunc(grace));
    this.tag = concat(TIMER_TAG, encode8(name), Uint8Array.of(0));
  }

  /** Adds a record of `side` ("left" or "right") and returns the pairs it makes with the
   * other side's waiting records, in their time order. A keyless record is bad input. */
  add(ctx, side, event) {
    if (side !== "left" && side !== "right") {
      throw new Fatal(`join ${this.name}: side ${JSON.stringify(side)} is neither "left" nor "right"`);
    }
    if (event.key === null) throw new BadInput(`join ${this.name}: a record has no key`);
    const key = event.key.slice();
    // A null timestamp is the handled record's, as when an event is emitted.
    // BigInt: the sums saturate at the s64 range and the key holds a u64.
    const t = BigInt(Math.trunc(Number(event.timestamp ?? ctx.currentTimestamp)));
    const before = BigInt(this.before);
    const after = BigInt(this.after);
    const [lo, hi] = side === "left" ? [sat(t - before), sat(t + after)] : [sat(t - after), sat(t + before)];
    const other = ctx.store(`${this.name}.${side === "left" ? "right" : "left"}`);
    const prefix = keyPrefix(key);
    const mine = { value: event.value.slice(), timestamp: Number(t) };
    const pairs = [];
    // Up to just past the key of time `hi` (the keys of one time have no suffix); read
    // whole before the entries are written back.
    const found = [...other.scan(entryKey(prefix, lo), concat(entryKey(prefix, hi), Uint8Array.of(0)))];
    for (const [k, v] of found) {
      const records = decodeRecords(v, this.name);
      const at = entryTime(k);
      for (const r of records) {
        r[0] = true;
        const theirs = { value: r[1], timestamp: at };
        pairs.push(side === "left" ? { key, left: mine, right: theirs } : { key, left: theirs, right: mine });
      }
      // Only left and outer joins ask later whether a record met one.
      if (this.kind !== "inner") other.set(k, encodeRecords(records));
    }
    // This record waits for the other side's records still to come.
    const store = ctx.store(`${this.name}.${side}`);
    const entry = entryKey(prefix, t);
    const held = store.get(entry);
    const records = held === null ? [] : decodeRecords(held, this.name);
    records.push([pairs.length > 0, event.value.slice()]);
    store.set(entry, encodeRecords(records));
    // Kept until the watermark passes the window (and the grace): a record that is not
    // late is at or above the watermark, so it finds every partner still here.
    const closes = sat(t + (side === "left" ? after : before));
    const due = Number(sat(closes + BigInt(this.grace) + 1n));
    ctx.setTimer(concat(this.tag, Uint8Array.of(side === "left" ? 0x6c : 0x72), entry), Math.min(due, TIMER_MAX));
    return pairs;
  }

  /** Call from `onTimer`: for one of this join's timers, drops the records whose window
   * closed and returns those that met none (left and outer joins); null for another
   * timer. */
  onTimer(ctx, key) {
    key = bytesOf(key);
    if (!startsWith(key, this.tag)) return null;
    const mark = key[this.tag.length];
    const side = mark === 0x6c ? "left" : mark === 0x72 ? "right" : null;
    const entry = key.slice(this.tag.length + 1);
    if (side === null || entry.length < 12 || 12 + readU32be(entry, 0) !== entry.length) {
      throw new Fatal(`join ${this.name}: timer key ${hex(key)} (hex) is not its own`);
    }
    const store = ctx.store(`${this.name}.${side}`);
    const held = store.get(entry);
    if (held === null) return [];
    store.delete(entry);
    if (!(this.kind === "outer" || (this.kind === "left" && side === "left"))) return [];
    const userKey = entry.slice(4, entry.length - 8);
    const at = entryTime(entry);
    const out = [];
    for (const [met, value] of decodeRecords(held, this.name)) {
      if (met) continue;
      const alone = { value, timestamp: at };
      out.push(side === "left" ? { key: userKey, left: alone, right: null } : { key: userKey, left: null, right: alone });
    }
    return out;
  }
}
