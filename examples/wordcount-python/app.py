"""Word count in Python, with exactly the semantics of examples/wordcount (Rust): words
are runs of non-whitespace (ASCII whitespace separates them) with ASCII punctuation
trimmed from both ends; `config.lowercase = true` lowercases ASCII letters; counts are
8-byte little-endian integers in the store `counts`."""

import re
import string

import eddy

_SPLIT = re.compile(r"[ \t\n\r\x0c]+")
_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def words(text):
    for w in _SPLIT.split(text):
        w = w.strip(string.punctuation)
        if w:
            yield w


class WordCount(eddy.Operator):
    def init(self, config):
        self.lowercase = config.bool("lowercase", False)

    def process(self, event, ctx):
        counts = ctx.store("counts")
        for word in words(event.value_str()):
            if self.lowercase:
                word = word.translate(_LOWER)
            n = counts.increment(word, 1)
            ctx.emit(eddy.Event(word, str(n)))


Handler = eddy.export(WordCount)
