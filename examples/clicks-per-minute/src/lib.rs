//! Clicks per page per minute: each click is an event keyed by its page; every closed
//! one-minute window emits `{"page", "window_start", "window_end", "count"}` keyed by the
//! page, at the window's last millisecond.
//!
//! `config.size_ms` (default 60000) sets the window length, `config.slide_ms` (default:
//! the size) makes the windows sliding, `config.lateness_ms` (default 0) keeps closed
//! windows that much longer for late clicks, which re-emit the window with
//! `"update": true`. Clicks too late for every window go to the side output `late`.
//! A click without a page is bad input.

use eddy_guest::prelude::*;
use eddy_guest::window::{Closed, Count, Windows};

pub struct ClicksPerMinute {
    windows: Windows,
}

impl Default for ClicksPerMinute {
    fn default() -> Self {
        ClicksPerMinute {
            windows: Windows::tumbling(60_000),
        }
    }
}

/// A window's result as the example emits it.
pub fn result(w: &Closed) -> String {
    let page = serde_json::Value::from(String::from_utf8_lossy(&w.key));
    let update = if w.update { r#","update":true"# } else { "" };
    format!(
        r#"{{"page":{page},"window_start":{},"window_end":{},"count":{}{update}}}"#,
        w.start,
        w.end,
        Count::value(&w.acc)
    )
}

impl Operator for ClicksPerMinute {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        let size: i64 = config.parse_or("size_ms", 60_000)?;
        let slide: i64 = config.parse_or("slide_ms", size)?;
        let lateness: i64 = config.parse_or("lateness_ms", 0)?;
        if size <= 0 || slide <= 0 || lateness < 0 {
            return Err(Error::Fatal(
                "size_ms and slide_ms must be above 0, lateness_ms not below 0".into(),
            ));
        }
        let windows = if slide == size {
            Windows::tumbling(size)
        } else {
            Windows::sliding(size, slide)
        };
        self.windows = windows.allowed_lateness(lateness);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        if event.key.as_deref().is_none_or(<[u8]>::is_empty) {
            return Err(Error::bad_input("a click needs its page as the key"));
        }
        let added = self.windows.add(ctx, &event, &Count)?;
        for w in &added.updates {
            ctx.emit(Event::new(w.key.clone(), result(w)).at(w.end - 1));
        }
        if added.dropped {
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

eddy_guest::export!(ClicksPerMinute);

#[cfg(test)]
mod tests {
    use super::*;
    use eddy_guest::testing::Harness;

    #[test]
    fn one_result_per_page_and_closed_minute() {
        let mut h = Harness::new(ClicksPerMinute::default()).unwrap();
        for (page, ts) in [
            ("home", 1_000),
            ("cart", 30_000),
            ("home", 59_999),
            ("home", 60_000),
        ] {
            assert!(h.process(Event::new(page, "").at(ts)).unwrap().is_empty());
        }
        let out = h.advance_watermark(60_000).unwrap();
        let values: Vec<_> = out
            .iter()
            .map(|o| o.event.value_str().unwrap().to_string())
            .collect();
        assert_eq!(
            values,
            [
                r#"{"page":"cart","window_start":0,"window_end":60000,"count":1}"#,
                r#"{"page":"home","window_start":0,"window_end":60000,"count":2}"#,
            ]
        );
        assert_eq!(out[0].event.timestamp, 59_999);
        let out = h.advance_watermark(i64::MAX).unwrap();
        assert_eq!(out.len(), 1, "the second minute closes at the end of input");
    }
}
