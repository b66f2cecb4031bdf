// The public API: events, stores, the context and the operator base class.

import { Store as HostStore } from "eddy:operator/state@0.1.0";
import { watermark, setEventTimer, deleteEventTimer } from "eddy:operator/timers@0.1.0";
import { info } from "eddy:operator/context@0.1.0";
import { log } from "eddy:operator/log@0.1.0";

import { BadInput, Fatal } from "./errors.js";
import { byteList, byteListItems, bytesOf, kvBatch, kvEntries } from "./flat.js";
import { decode } from "./utf8.js";

/** Entries fetched per host call while a scan is iterated. */
const SCAN_PAGE = 256;
const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

/**
 * One record: an optional key, a value, an event time in ms and headers. Keys and values
 * are Uint8Arrays; the constructor also takes strings (as UTF-8). A `null` timestamp takes
 * the time of the record (or timer) being handled when the event is emitted.
 */
export class Event {
  constructor(key, value, timestamp = null, headers = []) {
    // Strings stay strings until they are read as bytes or emitted: the output batch
    // takes them without an intermediate Uint8Array.
    this._key = key === null || key === undefined ? null : checked(key);
    this._value = checked(value);
    this.timestamp = timestamp;
    this.headers = headers.map(([name, v]) => [name, bytesOf(v)]);
  }

  /** The key as a Uint8Array, or null. */
  get key() {
    if (typeof this._key === "string") this._key = bytesOf(this._key);
    return this._key;
  }

  set key(k) {
    this._key = k === null || k === undefined ? null : checked(k);
  }

  /** The value as a Uint8Array. */
  get value() {
    if (typeof this._value === "string") this._value = bytesOf(this._value);
    return this._value;
  }

  set value(v) {
    this._value = checked(v);
  }

  static keyless(value) {
    return new Event(null, value);
  }

  at(timestamp) {
    this.timestamp = timestamp;
    return this;
  }

  withHeader(name, value) {
    this.headers.push([name, bytesOf(value)]);
    return this;
  }

  keyString() {
    if (this._key === null || typeof this._key === "string") return this._key;
    return utf8("key", this._key);
  }

  valueString() {
    if (typeof this._value === "string") return this._value;
    return utf8("value", this._value);
  }

  valueJson() {
    const text = this.valueString();
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new BadInput("value is not JSON: " + e.message);
    }
  }

  header(name) {
    for (const [n, v] of this.headers) if (n === name) return v;
    return null;
  }
}

/** A string or bytes, as given; anything else is refused at once. */
function checked(v) {
  return typeof v === "string" ? v : bytesOf(v);
}

function utf8(what, bytes) {
  try {
    return decode(bytes);
  } catch (e) {
    throw new BadInput(what + " is not UTF-8: " + e.message);
  }
}

/** The message of an error the host returned (a `result` error). */
function hostMessage(e) {
  const v = e && e.payload !== undefined ? e.payload : e;
  if (v && typeof v === "object" && "val" in v) return String(v.val);
  if (v && typeof v === "object" && "value" in v) return String(v.value);
  return String(v && v.message ? v.message : v);
}

function isNotACounter(e) {
  const v = e && e.payload !== undefined ? e.payload : e;
  return Boolean(v && typeof v === "object" && v.tag === "not-a-counter");
}

/**
 * A durable key-value store of the operator, scoped to its source partition. Writes are
 * visible at once and become durable when the host commits the batch, together with the
 * source offset and the outputs.
 */
export class Store {
  constructor(name) {
    this.name = name;
    try {
      this.handle = HostStore.open(name);
    } catch (e) {
      throw new Fatal("cannot open store " + name + ": " + hostMessage(e));
    }
  }

  /** The value under `key` (a Uint8Array), or null. */
  get(key) {
    const v = this.handle.get(bytesOf(key));
    return v === undefined ? null : v;
  }

  getString(key) {
    const v = this.get(key);
    return v === null ? null : utf8("stored value", v);
  }

  getJson(key) {
    const v = this.getString(key);
    if (v === null) return null;
    try {
      return JSON.parse(v);
    } catch (e) {
      throw new Fatal("store " + this.name + ": stored value is not JSON: " + e.message);
    }
  }

  getMany(keys) {
    return byteListItems(this.handle.getMany(byteList(keys.map(bytesOf))));
  }

  set(key, value) {
    this.handle.set(bytesOf(key), bytesOf(value));
  }

  setJson(key, value) {
    this.set(key, JSON.stringify(value));
  }

  setMany(entries) {
    this.handle.setMany(kvBatch(entries.map(([k, v]) => [bytesOf(k), bytesOf(v)])));
  }

  delete(key) {
    this.handle.delete(bytesOf(key));
  }

  /** Removes every key in `[start, end)` (to the end of the store without `end`). */
  deleteRange(start, end = null) {
    this.handle.deleteRange(bytesOf(start), end === null ? undefined : bytesOf(end));
  }

  /** The `[key, value]` entries with keys in `[start, end)`, in key order, page by page. */
  *scan(start = new Uint8Array(0), end = null) {
    const s = bytesOf(start);
    const e = end === null ? undefined : bytesOf(end);
    let continuation;
    for (;;) {
      const page = this.handle.scan(s, e, SCAN_PAGE, continuation);
      yield* kvEntries(page.entries);
      continuation = page.continuation;
      if (continuation === undefined || continuation === null) return;
    }
  }

  scanPrefix(prefix) {
    const p = bytesOf(prefix);
    const end = Array.from(p);
    while (end.length && end[end.length - 1] === 0xff) end.pop();
    if (end.length) end[end.length - 1] += 1;
    return this.scan(p, end.length ? Uint8Array.from(end) : null);
  }

  /** Adds `delta` to the counter under `key` (8-byte little-endian integers); the new value. */
  increment(key, delta = 1) {
    try {
      return Number(this.handle.increment(bytesOf(key), delta));
    } catch (e) {
      throw this.counterError(e);
    }
  }

  incrementMany(keys, deltas) {
    try {
      return Array.from(this.handle.incrementMany(byteList(keys.map(bytesOf)), deltas), Number);
    } catch (e) {
      throw this.counterError(e);
    }
  }

  counterError(e) {
    const message = "store " + this.name + ": " + hostMessage(e);
    return isNotACounter(e) ? new BadInput(message) : new Fatal(message);
  }
}

/** What an operator can do while it handles a record or a timer. */
export class Context {
  constructor(outputs) {
    this.outputs = outputs;
    this.stores = new Map();
    this.currentTimestamp = 0;
  }

  store(name) {
    let s = this.stores.get(name);
    if (s === undefined) {
      s = new Store(name);
      this.stores.set(name, s);
    }
    return s;
  }

  /** Emits on the main output: to the next operator, or the pipeline's sink. */
  emit(event) {
    this.outputs.push(null, event, this.currentTimestamp);
  }

  /** Emits on side output `port` (topic `<pipeline>.<port>`). */
  emitTo(port, event) {
    this.outputs.push(port, event, this.currentTimestamp);
  }

  /** The task's event-time watermark (ms). */
  watermark() {
    return Number(watermark());
  }

  /** Calls `onTimer(key, at, ctx)` once the watermark passes `at`. */
  setTimer(key, at) {
    setEventTimer(bytesOf(key), at);
  }

  deleteTimer(key, at) {
    deleteEventTimer(bytesOf(key), at);
  }

  /** `{pipeline, operator, version, partition, partitionCount}` of this task. */
  info() {
    return info();
  }

  /** Logs into the host's log; `level` is trace, debug, info, warn or error. */
  log(level, message) {
    log(LEVELS.has(level) ? level : "info", String(message));
  }
}

/**
 * Extend it, implement `process(event, ctx)`, and export it with `exportOperator`.
 * Keep durable data in stores, not in fields: the host may replace the instance (after a
 * failure, on an upgrade) and only stores survive.
 */
export class Operator {
  /** Version of the format this operator writes to its stores (see `migrate`). */
  static stateVersion = 1;

  /** Called once with the operator's `config` from the pipeline spec, as an object. */
  init(config) {}

  process(event, ctx) {
    throw new Fatal("implement process(event, ctx)");
  }

  /** A timer set with `ctx.setTimer` fired; `key` is a Uint8Array. */
  onTimer(key, at, ctx) {}

  /** Converts a value written in format `fromVersion`; return null to delete the key. */
  migrate(store, key, value, fromVersion) {
    return value;
  }
}
