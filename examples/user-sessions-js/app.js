// Sessions per user, in JavaScript, with the SDK's windows (`Windows.session`): the same
// operator as examples/user-sessions in Rust, byte for byte the same output. A session
// lasts while a user's clicks come less than `gap_ms` apart; each closed session emits
//   {"user": ..., "session_start": ..., "session_end": ..., "clicks": n}
// keyed by the user, at the session's last millisecond.

import { Operator, Event, BadInput, Fatal, Windows, COUNT, exportOperator, utf8Decode } from "eddy";

function result(w) {
  const user = JSON.stringify(utf8Decode(w.key));
  return `{"user":${user},"session_start":${w.start},"session_end":${w.end},"clicks":${COUNT.value(w.acc)}}`;
}

class UserSessions extends Operator {
  init(config) {
    const gap = config.int("gap_ms", 1800000);
    if (gap <= 0) throw new Fatal(`config \`gap_ms\` = ${gap}: expected a number above 0`);
    this.windows = Windows.session(gap);
  }

  process(event, ctx) {
    if (event.key === null || event.key.length === 0) {
      throw new BadInput("a click needs its user as the key");
    }
    if (this.windows.add(ctx, event, COUNT).dropped) ctx.emitTo("late", event);
  }

  onTimer(key, at, ctx) {
    for (const w of this.windows.onTimer(ctx, key, at)) {
      ctx.emit(new Event(w.key, result(w), w.end - 1));
    }
  }
}

export const handler = exportOperator(UserSessions);
