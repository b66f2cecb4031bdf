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
    const offset = this.len;
    const len = this.put(value);
    return len === ABSENT ? NONE : { offset, len };
  }

  /** Appends `value` (a string as UTF-8, or bytes); returns its length, or ABSENT for
   * null. It starts at the `len` read before the call. */
  put(value) {
    if (value === null || value === undefined) return ABSENT;
    const offset = this.len;
    if (typeof value === "string") {
      const n = value.length;
      this.reserve(n);
      const buf = this.buf;
      for (let i = 0; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 0x7f) {
          this.len = offset;
          return this.put(encode(value));
        }
        buf[offset + i] = c;
      }
      this.len = offset + n;
      return n;
    }
    const bytes = bytesOf(value);
    this.reserve(bytes.length);
    this.buf.set(bytes, offset);
    this.len = offset + bytes.length;
    return bytes.length;
  }

  take() {
    return this.buf.slice(0, this.len);
  }
}

/** The bytes of `parts`, one after another. */
export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function byteList(items) {
  const b = new Builder();
  const spans = items.map((item) => b.push(item));
  return { data: b.take(), items: spans };
}

export function byteListItems(list) {
  return list.items.map((span) => get(list.data, span));
}

export function kvEntries(batch) {
  return batch.entries.map((m) => [get(batch.data, m.key) || new Uint8Array(0), get(batch.data, m.value) || new Uint8Array(0)]);
}

export function headerName(data, span) {
  return decode(data, span.offset, span.offset + span.len, false);
}

// Packed descriptions (`packed-handler`): little-endian, 32 bytes per event (key and
// value spans, timestamp, headers start and length), 16 per header, 40 per output (an
// event and the port's span).
export const EVENT_WORDS = 8;
export const HEADER_WORDS = 4;
export const OUTPUT_WORDS = 10;
const TWO_32 = 4294967296;

/** A little-endian u32 at `at`. */
export function u32(b, at) {
  return (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
}

/** A little-endian s64 at `at` as a Number (exact within ±2^53: timestamps, counters). */
export function s64(b, at) {
  const hi = b[at + 4] | (b[at + 5] << 8) | (b[at + 6] << 16) | (b[at + 7] << 24);
  return hi * TWO_32 + u32(b, at);
}

export function putU32(b, at, n) {
  b[at] = n;
  b[at + 1] = n >>> 8;
  b[at + 2] = n >>> 16;
  b[at + 3] = n >>> 24;
}

/** Writes an integer Number within ±2^53 as a little-endian s64. */
export function putS64(b, at, n) {
  const hi = Math.floor(n / TWO_32);
  putU32(b, at, n - hi * TWO_32);
  putU32(b, at + 4, hi | 0);
}

/** `bytes` as 32-bit words (little-endian, as WebAssembly and every JS engine here are):
 * a view when aligned, else a copy. */
export function words32(bytes) {
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
  return new Uint32Array(bytes.slice().buffer, 0, bytes.length >>> 2);
}

/** A growable list of 32-bit words: fixed-size descriptions, written a word at a time. */
export class Packer {
  constructor(capacity = 1024) {
    this.words = new Uint32Array(capacity);
    this.len = 0;
  }

  clear() {
    this.len = 0;
  }

  /** Room for `n` more words; returns where they start. */
  grow(n) {
    const at = this.len;
    if (at + n > this.words.length) {
      const grown = new Uint32Array(Math.max(this.words.length * 2, at + n));
      grown.set(this.words.subarray(0, at));
      this.words = grown;
    }
    this.len = at + n;
    return at;
  }

  /** The words as bytes. */
  take() {
    return new Uint8Array(this.words.buffer.slice(0, this.len * 4));
  }
}
