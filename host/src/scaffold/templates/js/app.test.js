// Tests of {{name}} in Node, no component needed: `npm test` (node:test with the
// in-memory host of eddy/testing). `eddy new` and `eddy build` keep the SDK in
// node_modules/eddy.

import { test } from "node:test";
import assert from "node:assert/strict";
import { Event, BadInput } from "eddy";
import { Harness } from "eddy/src/testing.js";
import { handler } from "./app.js";

test("counts per key", () => {
  const h = new Harness(handler, { greeting: "hi" });
  const out = h.process([new Event("a", "x"), new Event("b", "y"), new Event("a", "z")]);
  assert.deepEqual(
    out.map((o) => [o.event.keyString(), o.event.valueString()]),
    [["a", "hi #1"], ["b", "hi #1"], ["a", "hi #2"]],
  );
});

test("a keyless event is bad input and leaves no trace", () => {
  const h = new Harness(handler);
  assert.throws(() => h.process(Event.keyless("x")), BadInput);
  assert.deepEqual(h.store("counts"), []);
});
