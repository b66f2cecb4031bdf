// Word count in JavaScript, with exactly the semantics of examples/wordcount (Rust): words
// are runs of non-whitespace (ASCII whitespace separates them) with ASCII punctuation
// trimmed from both ends; `config.lowercase = true` lowercases ASCII letters; counts are
// 8-byte little-endian integers in the store `counts`.

import { Operator, Event, exportOperator } from "eddy";

const PUNCTUATION = new Set("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~");

export function* words(text) {
  for (const raw of text.split(/[ \t\n\f\r]+/)) {
    let start = 0;
    let end = raw.length;
    while (start < end && PUNCTUATION.has(raw[start])) start++;
    while (end > start && PUNCTUATION.has(raw[end - 1])) end--;
    if (end > start) yield raw.slice(start, end);
  }
}

const asciiLower = (word) => word.replace(/[A-Z]+/g, (s) => s.toLowerCase());

class WordCount extends Operator {
  init(config) {
    this.lowercase = config.bool("lowercase", false);
  }

  process(event, ctx) {
    const counts = ctx.store("counts");
    for (let word of words(event.valueString())) {
      if (this.lowercase) word = asciiLower(word);
      const n = counts.increment(word, 1);
      ctx.emit(new Event(word, String(n)));
    }
  }
}

export const handler = exportOperator(WordCount);
