"""{{name}}: counts events per key and emits (key, "<greeting> #<count>")."""

import eddy


class Counter(eddy.Operator):
    def init(self, config):
        self.greeting = config.string("greeting", "hello")

    def process(self, event, ctx):
        key = event.key_str()
        if key is None:
            raise eddy.BadInput("events need a key")
        n = ctx.store("counts").increment(key, 1)
        ctx.emit(eddy.Event(key, f"{self.greeting} #{n}"))


# componentize-py exports the class named Handler.
Handler = eddy.export(Counter)
