// The exported `handler`: one operator instance per component instance.

import { Event, Context, _takeInput } from "./api.js";
import { Config } from "./config.js";
import { EddyError, BadInput } from "./errors.js";
import {
  ABSENT,
  Builder,
  EVENT_WORDS,
  HEADER_WORDS,
  OUTPUT_WORDS,
  Packer,
  base64,
  byteList,
  bytesOf,
  get,
  headerName,
  kvEntries,
  words32,
} from "./flat.js";

const TWO_32 = 4294967296;
/** 2^63, which is also how a number rounds s64's largest value. */
const MAX_S64 = 9223372036854775808;
import { decode } from "./utf8.js";

/** A key for a message: quoted when it is printable UTF-8 text, else base64. */
function keyText(key) {
  try {
    const text = decode(key);
    if (!/[\u0000-\u001f\u007f]/.test(text)) return JSON.stringify(text);
  } catch (_) {
    // not UTF-8
  }
  return "base64:" + base64(key);
}

const EMPTY = new Uint8Array(0);

/** Collects what an operator emits, packed; `takePacked` hands it over as a
 * `packed-output`, `take` as an `output-batch`. */
class Outputs {
  constructor() {
    this.data = new Builder();
    this.outputs = new Packer();
    this.headers = new Packer();
    this.headerCount = 0;
  }

  clear() {
    this.data.clear();
    this.outputs.clear();
    this.headers.clear();
    this.headerCount = 0;
  }

  push(port, event, currentTimestamp) {
    const d = this.data;
    const ko = d.len;
    const kl = d.put(event._key);
    const vo = d.len;
    const vl = d.put(event._value);
    const headers = event.headers;
    const hs = this.headerCount;
    for (const [name, v] of headers) {
      const no = d.len;
      const nl = d.put(name);
      const hvo = d.len;
      const hvl = d.put(v);
      const at = this.headers.grow(HEADER_WORDS);
      const w = this.headers.words;
      w[at] = no;
      w[at + 1] = nl;
      w[at + 2] = hvo;
      w[at + 3] = hvl;
    }
    this.headerCount += headers.length;
    const po = d.len;
    const pl = d.put(port);
    let ts = event.timestamp === null || event.timestamp === undefined ? currentTimestamp : event.timestamp;
    if (typeof ts !== "number") ts = Number(ts);
    // Past ±2^53 a number is not exact: s64's largest value rounds to 2^63; anything
    // beyond either end (or not a number) stays at that end.
    let lo = 0xffffffff;
    let hi = 0x7fffffff;
    if (!(ts >= -MAX_S64)) {
      lo = 0;
      hi = 0x80000000;
    } else if (ts < MAX_S64) {
      hi = Math.floor(ts / TWO_32);
      lo = ts - hi * TWO_32;
    }
    const at = this.outputs.grow(OUTPUT_WORDS);
    const w = this.outputs.words;
    w[at] = kl === ABSENT ? 0 : ko;
    w[at + 1] = kl;
    w[at + 2] = vo;
    w[at + 3] = vl;
    w[at + 4] = lo;
    w[at + 5] = hi;
    w[at + 6] = hs;
    w[at + 7] = headers.length;
    w[at + 8] = pl === ABSENT ? 0 : po;
    w[at + 9] = pl;
  }

  takePacked() {
    const batch = { data: this.data.take(), outputs: this.outputs.take(), headers: this.headers.take() };
    this.clear();
    return batch;
  }

  take() {
    // componentize-qjs lowers a u32 by saturating to i32: -1 wraps to ABSENT.
    const span = (w, at) => (w[at + 1] === ABSENT ? { offset: 0, len: -1 } : { offset: w[at], len: w[at + 1] });
    const o = this.outputs.words;
    const outputs = [];
    for (let at = 0; at < this.outputs.len; at += OUTPUT_WORDS) {
      const event = {
        key: span(o, at),
        value: span(o, at + 2),
        timestamp: (o[at + 5] | 0) * TWO_32 + o[at + 4],
        headersStart: o[at + 6],
        headersLen: o[at + 7],
      };
      outputs.push({ event, port: span(o, at + 8) });
    }
    const h = this.headers.words;
    const headers = [];
    for (let at = 0; at < this.headers.len; at += HEADER_WORDS) {
      headers.push({ name: span(h, at), value: span(h, at + 2) });
    }
    const batch = { data: this.data.take(), outputs, headers };
    this.clear();
    return batch;
  }
}

/** The events of an `event-batch` (from hosts older than `packed-handler`). */
function events(batch) {
  const data = batch.data;
  const headers = batch.headers;
  return batch.events.map((m) => {
    const e = Object.create(Event.prototype);
    e._key = get(data, m.key);
    e._value = get(data, m.value) || EMPTY;
    e.timestamp = m.timestamp;
    e.headers = [];
    for (let i = m.headersStart; i < m.headersStart + m.headersLen; i++) {
      const h = headers[i];
      e.headers.push([headerName(data, h.name), get(data, h.value) || EMPTY]);
    }
    return e;
  });
}

/** The events of a `packed-batch`. */
function packedEvents(batch) {
  const data = batch.data;
  const m = words32(batch.events);
  const h = words32(batch.headers);
  const n = m.length / EVENT_WORDS;
  const out = new Array(n);
  for (let i = 0, at = 0; i < n; i++, at += EVENT_WORDS) {
    const e = Object.create(Event.prototype);
    const ko = m[at];
    const kl = m[at + 1];
    e._key = kl === ABSENT ? null : data.subarray(ko, ko + kl);
    const vo = m[at + 2];
    const vl = m[at + 3];
    e._value = vl === ABSENT ? EMPTY : data.subarray(vo, vo + vl);
    e.timestamp = (m[at + 5] | 0) * TWO_32 + m[at + 4];
    const hl = m[at + 7];
    const headers = [];
    for (let j = m[at + 6], end = j + hl; j < end; j++) {
      const x = j * HEADER_WORDS;
      const name = { offset: h[x], len: h[x + 1] };
      const value = { offset: h[x + 2], len: h[x + 3] };
      headers.push([headerName(data, name), get(data, value) || EMPTY]);
    }
    e.headers = headers;
    out[i] = e;
  }
  return out;
}

function wireError(e) {
  if (e instanceof BadInput) return { tag: "bad-input", val: e.message };
  return { tag: "fatal", val: e.message };
}

/** Turns an operator class into the `handler` export: `export const handler = exportOperator(MyOperator)`.
 * Its `packed` member is the `packed-handler` export (batches packed as bytes). */
export function exportOperator(OperatorClass) {
  let op = null;
  let ctx = null;
  const outputs = new Outputs();

  /** Runs a batch; with the host's state `epoch`, the stores' caches may outlive it. */
  function run(list, epoch) {
    outputs.clear();
    ctx._begin(epoch);
    _takeInput(true);
    let index = 0;
    try {
      for (; index < list.length; index++) {
        const event = list[index];
        ctx.currentTimestamp = event.timestamp;
        op.process(event, ctx);
      }
      ctx._flush(epoch !== null);
    } catch (e) {
      ctx._discard();
      if (!(e instanceof EddyError)) throw e; // a bug in the operator: the instance traps
      outputs.clear();
      throw { index: Math.max(0, Math.min(index, list.length - 1)), error: wireError(e) };
    }
  }

  const handler = {
    init(config) {
      const settings = new Config(config);
      const candidate = new OperatorClass();
      try {
        candidate.init(settings);
      } catch (e) {
        // A bad config, say: the host refuses to start the operator, with the reason.
        throw e instanceof EddyError ? e.message : String(e && e.stack ? e.stack : e);
      }
      op = candidate;
      ctx = new Context(outputs);
      return { stateVersion: OperatorClass.stateVersion ?? 1 };
    },

    process(batch) {
      run(events(batch), null);
      return outputs.take();
    },

    onTimer(key, at) {
      outputs.clear();
      ctx.currentTimestamp = at;
      _takeInput(false);
      // No epoch comes with a timer: it starts from the host's values.
      ctx._begin(null);
      try {
        op.onTimer(key, at, ctx);
        ctx._flush(false);
      } catch (e) {
        ctx._discard();
        if (!(e instanceof EddyError)) throw e;
        outputs.clear();
        throw wireError(e);
      }
      return outputs.take();
    },

    migrate(store, fromVersion, entries) {
      const values = [];
      for (const [key, value] of kvEntries(entries)) {
        const where = "migrating store " + JSON.stringify(store) + " key " + keyText(key);
        let v;
        try {
          v = op.migrate(store, key, value, fromVersion);
        } catch (e) {
          const what = e instanceof EddyError || !(e && e.name) ? "" : e.name + ": ";
          throw where + ": " + what + (e && e.message ? e.message : String(e));
        }
        if (v === null || v === undefined) {
          values.push(null);
          continue;
        }
        try {
          values.push(bytesOf(v));
        } catch (_) {
          throw where + ": migrate returned " + typeof v + "; return a Uint8Array or a string (or null to drop the key)";
        }
      }
      return byteList(values);
    },
  };
  // The class, for `eddy/testing`'s Harness.
  handler.operator = OperatorClass;
  // `eddy build` exports it as `packedHandler` next to the module's `handler`.
  handler.packed = {
    process(batch) {
      run(packedEvents(batch), batch.stateEpoch);
      return outputs.takePacked();
    },
  };
  return handler;
}
