// The flat batch format of the WIT world: byte strings back to back in one buffer, spans
// pointing into it (one guest allocation per batch instead of one per field).

import { decode, encode } from "./utf8.js";

/** `len` of a span that stands for "absent" (a keyless event, a deleted value). */
export const ABSENT = 0xffffffff;
// componentize-qjs lowers a u32 by saturating to i32, so 0xffffffff would arrive as
// 0x7fffffff; -1 wraps to the 0xffffffff the host expects.
const NONE = { offset: 0, len: -1 };

export function bytesOf(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encode(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  throw new TypeError("expected a string or a Uint8Array, got " + typeof value);
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** Standard base64 with padding (the runtime has no btoa). */
export function base64(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    out += BASE64[(n >> 18) & 63] + BASE64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : "=";
    out += i + 2 < bytes.length ? BASE64[n & 63] : "=";
  }
  return out;
}

export function get(data, span) {
  if (span.len === ABSENT || span.len === -1) return null;
  return data.subarray(span.offset, span.offset + span.len);
}

/** A growable buffer that hands out spans. */
export class Builder {
  constructor(capacity = 4096) {
    this.buf = new Uint8Array(capacity);
    this.len = 0;
  }

  clear() {
    this.len = 0;
  }

  reserve(extra) {
    const need = this.len + extra;
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      grown.set(this.buf.subarray(0, this.len));
      this.buf = grown;
    }
  }

  push(value) {
    if (value === null || value === undefined) return NONE;
    const offset = this.len;
    if (typeof value === "string") {
      // ASCII straight into the buffer; anything else through the encoder.
      const n = value.length;
      this.reserve(n);
      const buf = this.buf;
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) {
          this.len = offset;
          return this.push(encode(value));
        }
        buf[offset + i] = c;
      }
      this.len = offset + n;
      return { offset, len: n };
    }
    const bytes = bytesOf(value);
    this.reserve(bytes.length);
    this.buf.set(bytes, offset);
    this.len = offset + bytes.length;
    return { offset, len: bytes.length };
  }

  take() {
    return this.buf.slice(0, this.len);
  }
}

export function byteList(items) {
  const b = new Builder();
  const spans = items.map((item) => b.push(item));
  return { data: b.take(), items: spans };
}

export function byteListItems(list) {
  return list.items.map((span) => get(list.data, span));
}

export function kvBatch(entries) {
  const b = new Builder();
  const metas = entries.map(([k, v]) => ({ key: b.push(k), value: b.push(v) }));
  return { data: b.take(), entries: metas };
}

export function kvEntries(batch) {
  return batch.entries.map((m) => [get(batch.data, m.key) || new Uint8Array(0), get(batch.data, m.value) || new Uint8Array(0)]);
}

export function headerName(data, span) {
  return decode(data, span.offset, span.offset + span.len, false);
}
