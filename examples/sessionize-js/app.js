// Sessionize click streams, in JavaScript: clicks are keyed by user; a session ends
// after `gap_ms` of event time without a click, and then one summary is emitted:
//   {"user": "u1", "start": ..., "end": ..., "clicks": 3, "pages": ["/", "/a", "/b"]}
// The open session lives in the store `sessions` (JSON); an event-time timer closes it,
// so sessions also close correctly when input arrives out of order within the gap.

import { Operator, Event, BadInput, Fatal, exportOperator, utf8Decode } from "eddy";

class Sessionize extends Operator {
  init(config) {
    this.gap = config.int("gap_ms", 1800000);
    if (this.gap <= 0) throw new Fatal(`config \`gap_ms\` = ${this.gap}: expected a number above 0`);
  }

  process(event, ctx) {
    const user = event.keyString();
    if (user === null) throw new BadInput("clicks need the user as key");
    const click = event.valueJson();
    const sessions = ctx.store("sessions");
    let s = sessions.getJson(user);
    if (s !== null && event.timestamp > s.end + this.gap) {
      // The gap passed but its timer has not fired yet (the watermark lags): close it now.
      this.close(user, s, ctx);
      s = null;
    }
    if (s === null) {
      s = { user, start: event.timestamp, end: event.timestamp, clicks: 0, pages: [] };
    } else {
      ctx.deleteTimer(user, s.end + this.gap);
    }
    s.start = Math.min(s.start, event.timestamp);
    s.end = Math.max(s.end, event.timestamp);
    s.clicks += 1;
    s.pages.push(String(click.page ?? "?"));
    sessions.setJson(user, s);
    ctx.setTimer(user, s.end + this.gap);
  }

  onTimer(key, at, ctx) {
    const user = utf8Decode(key);
    const s = ctx.store("sessions").getJson(user);
    if (s !== null && s.end + this.gap <= at) this.close(user, s, ctx);
  }

  close(user, s, ctx) {
    ctx.store("sessions").delete(user);
    ctx.deleteTimer(user, s.end + this.gap);
    ctx.emit(new Event(user, JSON.stringify(s), s.end));
  }
}

export const handler = exportOperator(Sessionize);
