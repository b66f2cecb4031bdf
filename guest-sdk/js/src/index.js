// Write Eddy stream operators in JavaScript.
//
//   import { Operator, Event, exportOperator } from "eddy";
//
//   class WordCount extends Operator {
//     process(event, ctx) {
//       const counts = ctx.store("counts");
//       for (const word of event.valueString().split(/\s+/)) {
//         if (word) ctx.emit(new Event(word, String(counts.increment(word, 1))));
//       }
//     }
//   }
//   export const handler = exportOperator(WordCount);
//
// Build the component with `eddy build DIR` (componentize-qjs under the hood).

export { Event, Store, Context, Operator } from "./api.js";
export { EddyError, BadInput, Fatal } from "./errors.js";
export { exportOperator } from "./export.js";
export { Config } from "./config.js";
export { encode as utf8Encode, decode as utf8Decode } from "./utf8.js";
export { Windows, COUNT, Acc } from "./window.js";
export { TableJoin, WindowJoin } from "./join.js";
