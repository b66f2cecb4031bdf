// The exported `handler`: one operator instance per component instance.

import { Event, Context } from "./api.js";
import { EddyError, BadInput } from "./errors.js";
import { Builder, base64, bytesOf, get, headerName, kvEntries, byteList } from "./flat.js";
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

/** Builds an `output-batch`. */
class Outputs {
  constructor() {
    this.data = new Builder();
    this.clear();
  }

  clear() {
    this.data.clear();
    this.outputs = [];
    this.headers = [];
  }

  push(port, event, currentTimestamp) {
    const d = this.data;
    const key = d.push(event._key);
    const value = d.push(event._value);
    const headersStart = this.headers.length;
    for (const [name, v] of event.headers) this.headers.push({ name: d.push(name), value: d.push(v) });
    const timestamp = event.timestamp === null || event.timestamp === undefined ? currentTimestamp : event.timestamp;
    const meta = { key, value, timestamp, headersStart, headersLen: event.headers.length };
    this.outputs.push({ event: meta, port: d.push(port) });
  }

  take() {
    const batch = { data: this.data.take(), outputs: this.outputs, headers: this.headers };
    this.clear();
    return batch;
  }
}

function events(batch) {
  const data = batch.data;
  const headers = batch.headers;
  return batch.events.map((m) => {
    const e = Object.create(Event.prototype);
    e._key = get(data, m.key);
    e._value = get(data, m.value) || new Uint8Array(0);
    e.timestamp = m.timestamp;
    e.headers = [];
    for (let i = m.headersStart; i < m.headersStart + m.headersLen; i++) {
      const h = headers[i];
      e.headers.push([headerName(data, h.name), get(data, h.value) || new Uint8Array(0)]);
    }
    return e;
  });
}

function wireError(e) {
  if (e instanceof BadInput) return { tag: "bad-input", val: e.message };
  return { tag: "fatal", val: e.message };
}

/** Turns an operator class into the `handler` export: `export const handler = exportOperator(MyOperator)`. */
export function exportOperator(OperatorClass) {
  let op = null;
  let ctx = null;
  const outputs = new Outputs();

  return {
    init(config) {
      const settings = {};
      for (const [k, v] of config) settings[k] = v;
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
      outputs.clear();
      const list = events(batch);
      for (let index = 0; index < list.length; index++) {
        const event = list[index];
        ctx.currentTimestamp = event.timestamp;
        try {
          op.process(event, ctx);
        } catch (e) {
          if (!(e instanceof EddyError)) throw e; // a bug in the operator: the instance traps
          outputs.clear();
          throw { index, error: wireError(e) };
        }
      }
      return outputs.take();
    },

    onTimer(key, at) {
      outputs.clear();
      ctx.currentTimestamp = at;
      try {
        op.onTimer(key, at, ctx);
      } catch (e) {
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
}
