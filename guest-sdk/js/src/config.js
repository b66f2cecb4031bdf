// The operator's `config` from the pipeline spec, with typed accessors.

import { Fatal } from "./errors.js";

const INT = /^[+-]?[0-9]+$/;
const FLOAT = /^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$/;
const DURATION = /^([0-9]+)\s*(ms|s|m|h|d)$/;
const UNIT_MS = { ms: 1, s: 1000, m: 60000, h: 3600000, d: 86400000 };

/** The text of `name` (an own property, whatever methods it hides), or undefined. */
function lookup(config, name) {
  return Object.prototype.hasOwnProperty.call(config, name) ? config[name] : undefined;
}

function typed(config, name, fallback, expected, parse) {
  const raw = lookup(config, name);
  if (raw === undefined) return fallback;
  const value = parse(raw.trim());
  if (value === undefined) throw invalid(name, raw, expected);
  return value;
}

function invalid(name, raw, expected) {
  return new Fatal("config `" + name + "` = " + JSON.stringify(raw) + ": expected " + expected);
}

/**
 * The spec's `config` table: each key is a property holding its text (arrays and tables
 * arrive as JSON text), and the accessors below parse a value or fail `init` with a
 * message naming the key, the value and what was expected:
 *
 *     init(config) {
 *       this.threshold = config.int("threshold", 5);
 *       this.windowMs = config.duration("window", "1m");
 *     }
 *
 * (A key named like an accessor hides it from `config.name(...)`; the accessors still read
 * it: `Config.prototype.int.call(config, "int", 0)`.)
 */
export class Config {
  constructor(entries = []) {
    for (const [k, v] of entries) this[k] = v;
  }

  /** The text of `name`, or undefined. */
  get(name) {
    return lookup(this, name);
  }

  /** `threshold = 5`: a whole number (exact up to 2^53). */
  int(name, fallback = 0) {
    return typed(this, name, fallback, "a whole number, such as 5", (v) => {
      const n = INT.test(v) ? Number(v) : NaN;
      return Number.isSafeInteger(n) ? n : undefined;
    });
  }

  /** `ratio = 0.5`: a finite number. */
  float(name, fallback = 0) {
    return typed(this, name, fallback, "a number, such as 0.5", (v) => {
      const n = FLOAT.test(v) ? Number(v) : NaN;
      return Number.isFinite(n) ? n : undefined;
    });
  }

  /** `lowercase = true`: `true` or `false`. */
  bool(name, fallback = false) {
    return typed(this, name, fallback, "true or false", (v) => (v === "true" ? true : v === "false" ? false : undefined));
  }

  /** The value as text. */
  string(name, fallback = "") {
    const raw = lookup(this, name);
    return raw === undefined ? fallback : raw;
  }

  /** `window = "1m"`, in milliseconds: a whole number with `ms`, `s`, `m`, `h` or `d`;
   * `fallback` is written the same way. */
  duration(name, fallback) {
    const raw = lookup(this, name) ?? fallback;
    const m = DURATION.exec(raw.trim());
    const ms = m ? Number(m[1]) * UNIT_MS[m[2]] : NaN;
    if (!Number.isSafeInteger(ms)) {
      throw invalid(name, raw, 'a duration such as "250ms", "5s", "1m", "2h" or "1d"');
    }
    return ms;
  }

  /** `pages = ["home", "cart"]`: each item as text (numbers and booleans too); empty when
   * unset. */
  list(name) {
    const raw = lookup(this, name);
    if (raw === undefined) return [];
    const how = 'a list of strings, numbers or booleans, such as ["a", "b"]';
    let items;
    try {
      items = JSON.parse(raw);
    } catch (_) {
      throw invalid(name, raw, how);
    }
    if (!Array.isArray(items)) throw invalid(name, raw, how);
    return items.map((item) => {
      if (typeof item === "string") return item;
      if (typeof item === "number" || typeof item === "boolean") return String(item);
      throw invalid(name, raw, how);
    });
  }
}
