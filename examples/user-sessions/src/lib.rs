//! Sessions per user: clicks keyed by user, a session lasting while clicks come less than
//! `config.gap_ms` (default 30 minutes) apart. Each closed session emits
//! `{"user", "session_start", "session_end", "clicks"}` keyed by the user; the end is the
//! last click plus the gap. A click that joins two sessions merges them.
//! A click without a user is bad input.

use eddy_guest::prelude::*;
use eddy_guest::window::{Closed, Count, Windows};

pub struct UserSessions {
    windows: Windows,
}

impl Default for UserSessions {
    fn default() -> Self {
        UserSessions {
            windows: Windows::session(30 * 60 * 1000),
        }
    }
}

/// A session as the example emits it.
pub fn result(w: &Closed) -> String {
    let user = serde_json::Value::from(String::from_utf8_lossy(&w.key));
    format!(
        r#"{{"user":{user},"session_start":{},"session_end":{},"clicks":{}}}"#,
        w.start,
        w.end,
        Count::value(&w.acc)
    )
}

impl Operator for UserSessions {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        let gap: i64 = config.parse_or("gap_ms", 30 * 60 * 1000)?;
        if gap <= 0 {
            return Err(Error::Fatal("gap_ms must be above 0".into()));
        }
        self.windows = Windows::session(gap);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        if event.key.as_deref().is_none_or(<[u8]>::is_empty) {
            return Err(Error::bad_input("a click needs its user as the key"));
        }
        if self.windows.add(ctx, &event, &Count)?.dropped {
            ctx.emit_to("late", event);
        }
        Ok(())
    }

    fn on_timer(&mut self, key: Vec<u8>, at: i64, ctx: &mut Context) -> Result<(), Error> {
        for w in self.windows.on_timer(ctx, &key, at)? {
            ctx.emit(Event::new(w.key.clone(), result(&w)).at(w.end - 1));
        }
        Ok(())
    }
}

eddy_guest::export!(UserSessions);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn a_click_between_two_sessions_merges_them() {
        let mut h = Harness::with_config(UserSessions::default(), &[("gap_ms", "100")]).unwrap();
        for ts in [0, 180, 400, 90] {
            h.process(Event::new("ann", "").at(ts)).unwrap();
        }
        let out = h.advance_watermark(i64::MAX).unwrap();
        let values: Vec<_> = out
            .iter()
            .map(|o| o.event.value_str().unwrap().to_string())
            .collect();
        // 0 and 180 open two sessions; 90, arriving out of order, bridges them.
        assert_eq!(
            values,
            [
                r#"{"user":"ann","session_start":0,"session_end":280,"clicks":3}"#,
                r#"{"user":"ann","session_start":400,"session_end":500,"clicks":1}"#,
            ]
        );
    }
}
