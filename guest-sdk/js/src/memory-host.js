// The host's imports in memory, for Node (`eddy/testing`): what `eddy:operator/state`,
// `timers`, `context` and `log` give a component, over stores, timers and logs that a
// `Harness` owns. `testing-hooks.js` points those imports here.

import { ABSENT, Builder } from "./flat.js";

/** What a host keeps for one task: stores (Maps from one char per byte to bytes),
 * timers, the watermark, logs. */
export class MemoryState {
  constructor() {
    this.stores = new Map();
    this.timers = new Map(); // "<at> <key chars>" -> [at, key]
    this.watermark = -9223372036854775808;
    this.logs = [];
    this.info = { pipeline: "test", operator: "operator", version: 1, partition: 0, partitionCount: 1 };
    this.input = "source";
  }

  snapshot() {
    const stores = new Map();
    for (const [name, s] of this.stores) stores.set(name, new Map(s));
    return { stores, timers: new Map(this.timers) };
  }

  restore(snapshot) {
    this.stores = snapshot.stores;
    this.timers = snapshot.timers;
  }
}

/** The state the running harness serves. */
export const host = { state: new MemoryState() };

const chars = (bytes) => {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
  return s;
};

const bytesOfChars = (s) => Uint8Array.from(s, (c) => c.charCodeAt(0));

const NAME = /^[A-Za-z0-9._-]{1,64}$/;

function span(list, s) {
  return s.len === ABSENT || s.len === -1 ? null : list.data.subarray(s.offset, s.offset + s.len);
}

export class Store {
  constructor(name) {
    this.name = name;
  }

  static open(name) {
    if (!NAME.test(name) || name.startsWith("__")) {
      throw { payload: { tag: "invalid-argument", val: "store names are 1 to 64 of A-Z a-z 0-9 . _ - (not starting with __)" } };
    }
    return new Store(name);
  }

  get data() {
    let s = host.state.stores.get(this.name);
    if (s === undefined) host.state.stores.set(this.name, (s = new Map()));
    return s;
  }

  get(key) {
    return this.data.get(chars(key))?.slice();
  }

  getMany(list) {
    const b = new Builder();
    const items = list.items.map((s) => b.push(this.data.get(chars(span(list, s))) ?? null));
    return { data: b.take(), items };
  }

  delete(key) {
    this.data.delete(chars(key));
  }

  deleteRange(start, end) {
    const from = chars(start);
    const to = end === undefined ? null : chars(end);
    for (const k of [...this.data.keys()]) if (k >= from && (to === null || k < to)) this.data.delete(k);
  }

  writePacked(writes) {
    const w = new Uint32Array(writes.entries.slice().buffer);
    for (let at = 0; at < w.length; at += 4) {
      const key = chars(writes.data.subarray(w[at], w[at] + w[at + 1]));
      if (w[at + 3] === ABSENT) this.data.delete(key);
      else this.data.set(key, writes.data.slice(w[at + 2], w[at + 2] + w[at + 3]));
    }
  }

  scan(start, end, limit, continuation) {
    const from = chars(continuation ?? start);
    const to = end === undefined ? null : chars(end);
    const keys = [...this.data.keys()].filter((k) => k >= from && (to === null || k < to)).sort();
    const b = new Builder();
    const entries = keys.slice(0, limit).map((k) => ({ key: b.push(bytesOfChars(k)), value: b.push(this.data.get(k)) }));
    return { entries: { data: b.take(), entries }, continuation: keys.length > limit ? bytesOfChars(keys[limit]) : undefined };
  }

  increment(key, delta) {
    const k = chars(key);
    const v = this.data.get(k);
    if (v !== undefined && v.length !== 8) {
      const text = JSON.stringify(new TextDecoder().decode(key));
      throw { payload: { tag: "not-a-counter", val: `value under key ${text} is ${v.length} bytes, not an 8-byte little-endian counter` } };
    }
    const current = v === undefined ? 0n : new DataView(v.buffer, v.byteOffset, 8).getBigInt64(0, true);
    const n = BigInt.asIntN(64, current + BigInt(delta));
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigInt64(0, n, true);
    this.data.set(k, out);
    return n;
  }
}

export function watermark() {
  return BigInt(host.state.watermark);
}

export function setEventTimer(key, at) {
  host.state.timers.set(`${at} ${chars(key)}`, [Number(at), key.slice()]);
}

export function deleteEventTimer(key, at) {
  host.state.timers.delete(`${at} ${chars(key)}`);
}

/** The first timer due at `watermark`, removed, or null. */
export function dueTimer(watermark) {
  let first = null;
  for (const [id, [at, key]] of host.state.timers) {
    if (at <= watermark && (first === null || at < first[1] || (at === first[1] && chars(key) < chars(first[2])))) {
      first = [id, at, key];
    }
  }
  if (first === null) return null;
  host.state.timers.delete(first[0]);
  return [first[1], first[2]];
}

export function currentInput() {
  return host.state.input;
}

export function info() {
  return host.state.info;
}

export function log(level, message) {
  host.state.logs.push([level, message]);
}
