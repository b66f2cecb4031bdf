// UTF-8 by hand: the QuickJS runtime of componentize-qjs has no TextEncoder/TextDecoder.

/** Encodes a string as UTF-8 (lone surrogates become U+FFFD, as TextEncoder does). */
export function encode(text) {
  const n = text.length;
  let ascii = true;
  for (let i = 0; i < n; i++) {
    if (text.charCodeAt(i) > 0x7f) {
      ascii = false;
      break;
    }
  }
  if (ascii) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = text.charCodeAt(i);
    return out;
  }
  const out = [];
  for (let i = 0; i < n; i++) {
    let c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < n) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) c = 0xfffd;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return Uint8Array.from(out);
}

/**
 * Decodes UTF-8 bytes `[start, end)` of `bytes`. With `fatal`, invalid input throws a
 * TypeError; without, it becomes U+FFFD.
 */
export function decode(bytes, start = 0, end = bytes.length, fatal = true) {
  if (end - start <= 1024) {
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (bytes[i] > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, bytes.subarray(start, end));
  }
  let s = "";
  let chunk = [];
  const flush = () => {
    s += String.fromCharCode.apply(null, chunk);
    chunk = [];
  };
  const bad = () => {
    if (fatal) throw new TypeError("invalid UTF-8 at byte " + (i - start));
    chunk.push(0xfffd);
  };
  let i = start;
  while (i < end) {
    const b = bytes[i];
    let c;
    let need;
    if (b < 0x80) {
      chunk.push(b);
      i++;
      if (chunk.length >= 4096) flush();
      continue;
    } else if (b >= 0xc2 && b < 0xe0) {
      c = b & 0x1f;
      need = 1;
    } else if (b >= 0xe0 && b < 0xf0) {
      c = b & 0x0f;
      need = 2;
    } else if (b >= 0xf0 && b < 0xf5) {
      c = b & 0x07;
      need = 3;
    } else {
      bad();
      i++;
      continue;
    }
    if (i + need >= end) {
      bad();
      i++;
      continue;
    }
    let ok = true;
    for (let k = 1; k <= need; k++) {
      const t = bytes[i + k];
      if ((t & 0xc0) !== 0x80) {
        ok = false;
        break;
      }
      c = (c << 6) | (t & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are invalid.
    if (!ok || (need === 2 && c < 0x800) || (need === 3 && (c < 0x10000 || c > 0x10ffff)) || (c >= 0xd800 && c <= 0xdfff)) {
      bad();
      i++;
      continue;
    }
    i += need + 1;
    if (c >= 0x10000) {
      c -= 0x10000;
      chunk.push(0xd800 + (c >> 10), 0xdc00 + (c & 0x3ff));
    } else {
      chunk.push(c);
    }
    if (chunk.length >= 4096) flush();
  }
  flush();
  return s;
}
