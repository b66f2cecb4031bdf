// A stream-table join over a store: plain library code, so its state survives restarts,
// savepoints and hot upgrades like any other (the Rust and Python SDKs' `TableJoin`).
//
//   const customers = new TableJoin("customers", "left");
//   process(event, ctx) {
//     if (event.input() === "customers") return customers.update(ctx, event);
//     const found = customers.join(ctx, event); // null: an inner join drops the event
//     if (found !== null) ctx.emit(new Event(event.key, found.row ?? "null"));
//   }

import { BadInput, Fatal } from "./errors.js";

export class TableJoin {
  /** A join with the table in store `store`; `kind` is "inner" (only events whose key
   * has a row) or "left" (every event). */
  constructor(store, kind = "inner") {
    if (kind !== "inner" && kind !== "left") {
      throw new Fatal(`join kind ${JSON.stringify(kind)}: expected "inner" or "left"`);
    }
    this.store = store;
    this.kind = kind;
  }

  /** Applies a record of the table input: its value becomes the key's row; an empty
   * value deletes it (a tombstone). A keyless record is bad input. */
  update(ctx, event) {
    if (event.key === null) throw new BadInput(`a record of table ${JSON.stringify(this.store)} has no key`);
    const table = ctx.store(this.store);
    if (event.value.length === 0) table.delete(event.key);
    else table.set(event.key, event.value);
  }

  /** The row a stream event joins with: null when an inner join drops it (no row, or no
   * key), else `{ row }` with the row's bytes (or null: a left join's event without one). */
  join(ctx, event) {
    const row = event.key === null ? null : this.row(ctx, event.key);
    if (row === null && this.kind === "inner") return null;
    return { row };
  }

  /** The table's current row under `key` (a Uint8Array), or null. */
  row(ctx, key) {
    return ctx.store(this.store).get(key) ?? null;
  }
}
