// The public API: events, stores, the context and the operator base class.

import { Store as HostStore } from "eddy:operator/state@0.1.2";
import { watermark, setEventTimer, deleteEventTimer } from "eddy:operator/timers@0.1.2";
import { info, currentInput } from "eddy:operator/context@0.1.2";
import { log } from "eddy:operator/log@0.1.2";

import { BadInput, Fatal } from "./errors.js";
import { Builder, byteList, byteListItems, bytesOf, kvEntries, putS64, s64 } from "./flat.js";
import { decode } from "./utf8.js";

/** Entries fetched per host call while a scan is iterated. */
const SCAN_PAGE = 256;
const LEVELS = new Set(["trace", "debug", "info", "warn", "error"]);

/**
 * One record: an optional key, a value, an event time in ms and headers. Keys and values
 * are Uint8Arrays; the constructor also takes strings (as UTF-8). A `null` timestamp takes
 * the time of the record (or timer) being handled when the event is emitted.
 */
/** The pipeline input of the batch being handled: the host hands batches over one input
 * at a time. */
const current = { input: null };

/** Reads the batch's input from the host (`null`: a timer call). */
export function _takeInput(fromHost) {
  current.input = fromHost ? (currentInput() ?? null) : null;
}

export class Event {
  constructor(key, value, timestamp = null, headers = []) {
    // Strings stay strings until they are read as bytes or emitted: the output batch
    // takes them without an intermediate Uint8Array.
    this._key = key === null || key === undefined ? null : checked(key);
    this._value = checked(value);
    this.timestamp = timestamp;
    this.headers = headers.map(([name, v]) => [name, bytesOf(v)]);
  }

  /** The name of the pipeline input this event came from: its `[[inputs]]` name, or
   * "source" for a pipeline with one `[source]`; null in `onTimer` and after a
   * repartition. (The input of the batch being handled: ask it in `process`.) */
  input() {
    return current.input;
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

/** Values a store's cache holds, at most, and their bytes (keys and values): past
 * either, it hands its writes to the host and starts over, within a batch too. */
export const CACHE_ENTRIES = 16384;
export const CACHE_BYTES = 4 << 20;

/** Every store opened in this instance (through `ctx.store` or `new Store(name)`), by
 * name: one object, so one cache, per store; their caches are flushed and dropped
 * together. */
const STORES = new Map();

/** A Map key for a store key: an ASCII string as it is, anything else one char per byte
 * of its UTF-8 (so "a" and Uint8Array [97] are the same key). */
const ASCII = /^[\x00-\x7f]*$/;

function cacheKey(key) {
  if (typeof key === "string" && ASCII.test(key)) return key;
  const bytes = bytesOf(key);
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
}

function counterBytes(n) {
  const b = new Uint8Array(8);
  putS64(b, 0, n);
  return b;
}

/** `key` or `value` as bytes the cache owns: a caller's Uint8Array (or a view into a
 * batch) is copied, so changing it later changes nothing stored. */
function ownBytes(value) {
  return typeof value === "string" ? bytesOf(value) : bytesOf(value).slice();
}

/** A cached value handed to the operator: a copy, so changing it changes nothing stored. */
function copyOf(value) {
  return value === null ? null : value.slice();
}

/** A cache entry's value; a counter kept as a number (`n`) becomes its bytes on demand. */
function valueOf(e) {
  if (e.n !== undefined) {
    e.value = counterBytes(e.n);
    e.n = undefined;
  }
  return e.value;
}

/**
 * A durable key-value store of the operator, scoped to its source partition. Writes are
 * visible at once and become durable when the host commits the batch, together with the
 * source offset and the outputs.
 *
 * The store keeps what it read and wrote in a cache and hands the writes to the host in
 * one call when a batch ends (or before a scan), so a key used by many records crosses
 * to the host once. The cache outlives a batch while the host says (by its state epoch)
 * that nothing this instance wrote was forgotten, within `CACHE_ENTRIES` values and
 * `CACHE_BYTES`. A failed
 * batch drops the cache, and the host drops the batch's writes: nothing of it remains.
 */
export class Store {
  constructor(name) {
    // One object per store: two would each cache, and miss the other's writes.
    const existing = STORES.get(name);
    if (existing !== undefined) return existing;
    this.name = name;
    try {
      this.handle = HostStore.open(name);
    } catch (e) {
      throw new Fatal("cannot open store " + name + ": " + hostMessage(e));
    }
    /** cache key -> {key: bytes, value: bytes or null (absent), n: a counter's number
     * when it was incremented since `value` was set, dirty: in `this.dirty`}, as the
     * batch sees it. An entry is never replaced while it is dirty. */
    this.cache = new Map();
    /** the entries written since the last flush */
    this.dirty = [];
    this.bytes = 0;
    STORES.set(name, this);
  }

  /** Hands the cached writes to the host. */
  _flush() {
    const dirty = this.dirty;
    if (dirty.length === 0) return;
    // One call for every write: key and value spans as 32-bit words (`packed-writes`).
    const data = new Builder();
    const words = new Uint32Array(dirty.length * 4);
    for (let i = 0, at = 0; i < dirty.length; i++, at += 4) {
      const e = dirty[i];
      e.dirty = false;
      words[at] = data.len;
      words[at + 1] = data.put(e.key);
      words[at + 2] = data.len;
      if (e.n !== undefined) {
        // A counter goes straight into the buffer, without a Uint8Array of its own.
        data.reserve(8);
        putS64(data.buf, data.len, e.n);
        data.len += 8;
        words[at + 3] = 8;
      } else {
        words[at + 3] = data.put(e.value);
      }
    }
    this.handle.writePacked({ data: data.take(), entries: new Uint8Array(words.buffer) });
    dirty.length = 0;
  }

  _reset() {
    this.cache.clear();
    this.dirty.length = 0;
    this.bytes = 0;
  }

  /** Caches a new entry under `ck`; past the cache's bounds, hands the writes to the host
   * and starts over (the host keeps them in the batch, so a failure still drops them). */
  _insert(ck, e) {
    this.cache.set(ck, e);
    this._grew(e.key.length + (e.value === null ? 8 : e.value.length));
  }

  _grew(bytes) {
    this.bytes += bytes;
    if (this.bytes > CACHE_BYTES || this.cache.size > CACHE_ENTRIES) {
      this._flush();
      this._reset();
    }
  }

  /** Marks a cached entry written since the last flush. */
  _dirty(e) {
    if (!e.dirty) {
      e.dirty = true;
      this.dirty.push(e);
    }
  }

  /** Caches a write; `value` (null: a delete) must be the cache's own copy. */
  _write(key, value) {
    const ck = cacheKey(key);
    const e = this.cache.get(ck);
    if (e === undefined) {
      const fresh = { key: ownBytes(key), value, n: undefined, dirty: false };
      this._dirty(fresh);
      this._insert(ck, fresh);
    } else {
      e.value = value;
      e.n = undefined;
      this._dirty(e);
      this._grew(value === null ? 0 : value.length);
    }
  }

  /** The value under `key` (a Uint8Array), or null. */
  get(key) {
    const ck = cacheKey(key);
    const e = this.cache.get(ck);
    if (e !== undefined) return copyOf(valueOf(e));
    const bytes = ownBytes(key);
    const v = this.handle.get(bytes);
    const value = v === undefined ? null : v;
    this._insert(ck, { key: bytes, value, n: undefined, dirty: false });
    return copyOf(value);
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
    const missing = keys.filter((k) => !this.cache.has(cacheKey(k))).map(ownBytes);
    const found = new Map();
    if (missing.length) {
      const values = byteListItems(this.handle.getMany(byteList(missing)));
      missing.forEach((k, i) => found.set(cacheKey(k), { key: k, value: values[i], n: undefined, dirty: false }));
    }
    // Answer first: caching may start the cache over.
    const answer = keys.map((k) => {
      const ck = cacheKey(k);
      return copyOf(valueOf(found.get(ck) ?? this.cache.get(ck)));
    });
    for (const [ck, e] of found) this._insert(ck, e);
    return answer;
  }

  set(key, value) {
    this._write(key, ownBytes(value));
  }

  setJson(key, value) {
    this.set(key, JSON.stringify(value));
  }

  setMany(entries) {
    for (const [k, v] of entries) this.set(k, v);
  }

  delete(key) {
    this._write(key, null);
  }

  /** Removes every key in `[start, end)` (to the end of the store without `end`). */
  deleteRange(start, end = null) {
    this._flush();
    this._reset();
    this.handle.deleteRange(bytesOf(start), end === null ? undefined : bytesOf(end));
  }

  /** The `[key, value]` entries with keys in `[start, end)`, in key order, page by page. */
  *scan(start = new Uint8Array(0), end = null) {
    const s = bytesOf(start);
    const e = end === null ? undefined : bytesOf(end);
    let continuation;
    for (;;) {
      this._flush();
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
    const ck = cacheKey(key);
    const e = this.cache.get(ck);
    if (e !== undefined && typeof delta === "number") {
      let current;
      if (e.n !== undefined) current = e.n;
      else if (e.value === null) current = 0;
      else if (e.value.length === 8) current = s64(e.value, 0);
      else {
        const text = decode(e.key, 0, e.key.length, false);
        throw new BadInput(
          "store " + this.name + ": value under key " + JSON.stringify(text) + " is " + e.value.length +
            " bytes, not an 8-byte little-endian counter",
        );
      }
      const n = current + delta;
      if (Number.isSafeInteger(current) && Number.isSafeInteger(n)) {
        e.n = n;
        this._dirty(e);
        return n;
      }
    }
    // A key not seen lately (or a counter past 2^53, which the host wraps exactly): the
    // host adds and answers in one call. A cached key may have a write the host has not
    // seen yet: hand the writes over first. An uncached one has none (an entry leaves the
    // cache only when everything was handed over), so the host's value is current.
    if (e !== undefined) this._flush();
    const bytes = ownBytes(key);
    let n;
    try {
      n = Number(this.handle.increment(bytes, delta));
    } catch (err) {
      throw this.counterError(err);
    }
    // Nothing of this key is dirty (flushed above, or never cached), so the entry may be
    // replaced.
    if (Number.isSafeInteger(n)) this._insert(ck, { key: bytes, value: null, n, dirty: false });
    else this.cache.delete(ck);
    return n;
  }

  incrementMany(keys, deltas) {
    if (keys.length !== deltas.length) {
      throw new Fatal("incrementMany got " + keys.length + " keys and " + deltas.length + " deltas");
    }
    return keys.map((k, i) => this.increment(k, deltas[i]));
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
    this.epoch = null;
    this.currentTimestamp = 0;
  }

  /** Starts a call: the caches stay only when the host's state epoch is the one they
   * were filled in (no write of this instance was forgotten since). */
  _begin(epoch) {
    if (epoch === null || epoch === undefined || epoch !== this.epoch) this._discard();
    this.epoch = epoch ?? null;
  }

  /** Hands the call's cached writes to the host; `keep` keeps the cached values for the
   * next batch, up to a bound. */
  _flush(keep) {
    for (const s of STORES.values()) {
      s._flush();
      if (!keep) s._reset();
    }
  }

  /** Forgets the caches (after a failed call the host drops its writes too). */
  _discard() {
    this.epoch = null;
    for (const s of STORES.values()) s._reset();
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
