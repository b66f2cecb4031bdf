"""Clicks per page per minute, in Python, with the SDK's windows (``eddy.window``): the
same operator as examples/clicks-per-minute in Rust, byte for byte the same output.

Each click is an event keyed by its page; every closed window emits
{"page", "window_start", "window_end", "count"} keyed by the page, at the window's last
millisecond. Config: size_ms (default 60000), slide_ms (default: the size),
lateness_ms (default 0). Clicks too late for every window go to the side output `late`.
"""

import json

import eddy
from eddy.window import COUNT, Windows


def result(w):
    page = json.dumps(w.key.decode("utf-8", "replace"))
    update = ',"update":true' if w.update else ""
    return (
        f'{{"page":{page},"window_start":{w.start},"window_end":{w.end},'
        f'"count":{COUNT.value(w.acc)}{update}}}'
    )


class ClicksPerMinute(eddy.Operator):
    def init(self, config):
        size = config.int("size_ms", 60000)
        slide = config.int("slide_ms", size)
        lateness = config.int("lateness_ms", 0)
        if size <= 0 or slide <= 0 or lateness < 0:
            raise eddy.Fatal("size_ms and slide_ms must be above 0, lateness_ms not below 0")
        windows = Windows.tumbling(size) if slide == size else Windows.sliding(size, slide)
        self.windows = windows.allowed_lateness(lateness)

    def process(self, event, ctx):
        if not event.key:
            raise eddy.BadInput("a click needs its page as the key")
        added = self.windows.add(ctx, event, COUNT)
        for w in added.updates:
            ctx.emit(eddy.Event(w.key, result(w)).at(w.end - 1))
        if added.dropped:
            ctx.emit_to("late", event)

    def on_timer(self, key, at, ctx):
        for w in self.windows.on_timer(ctx, key, at):
            ctx.emit(eddy.Event(w.key, result(w)).at(w.end - 1))


Handler = eddy.export(ClicksPerMinute)
