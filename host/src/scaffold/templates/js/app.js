// {{name}}: counts events per key and emits (key, "<greeting> #<count>").

import { Operator, Event, BadInput, exportOperator } from "eddy";

class Counter extends Operator {
  init(config) {
    this.greeting = config.string("greeting", "hello");
  }

  process(event, ctx) {
    const key = event.keyString();
    if (key === null) throw new BadInput("events need a key");
    const n = ctx.store("counts").increment(key, 1);
    ctx.emit(new Event(key, `${this.greeting} #${n}`));
  }
}

export const handler = exportOperator(Counter);
