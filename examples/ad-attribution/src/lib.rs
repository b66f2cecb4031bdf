//! Impressions ⋈ clicks: a windowed stream–stream join over two inputs of one pipeline.
//!
//! Both inputs are keyed alike (by user and ad, say `u7/ad3`). A click is attributed to
//! every impression of its key shown at most `window` (default 10 minutes) before it:
//! `{"impression":<the impression>,"click":<the click>}`, emitted when the later of the
//! two arrives. With `join = "left"`, an impression that got no click is emitted with
//! `"click":null` once its window has closed (the watermark passed it). Values must be
//! JSON for the output to be JSON; the operator does not parse them.

use eddy_guest::join::{Joined, Pair, Side, WindowJoin, WindowJoinKind};
use eddy_guest::prelude::*;

pub struct AdAttribution {
    join: WindowJoin,
}

impl Default for AdAttribution {
    fn default() -> Self {
        AdAttribution {
            join: WindowJoin::inner("attribution", 600_000).before(0),
        }
    }
}

fn value(j: &Option<Joined>) -> &[u8] {
    j.as_ref()
        .map_or(b"null".as_slice(), |j| j.value.as_slice())
}

fn emit(ctx: &mut Context, pairs: Vec<Pair>) {
    for p in pairs {
        let (imp, click) = (value(&p.left), value(&p.right));
        let mut v = Vec::with_capacity(imp.len() + click.len() + 26);
        v.extend_from_slice(b"{\"impression\":");
        v.extend_from_slice(imp);
        v.extend_from_slice(b",\"click\":");
        v.extend_from_slice(click);
        v.push(b'}');
        // At the click's time (or the impression's, for one that got none).
        let at = p
            .right
            .as_ref()
            .or(p.left.as_ref())
            .map_or(0, |j| j.timestamp);
        ctx.emit(Event::new(p.key, v).at(at));
    }
}

impl Operator for AdAttribution {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        let window = config.duration("window", "10m")?.as_millis() as i64;
        let kind = match config.string("join", "inner").as_str() {
            "inner" => WindowJoinKind::Inner,
            "left" => WindowJoinKind::Left,
            other => {
                return Err(Error::fatal(format!(
                    "config join = {other:?}: expected \"inner\" or \"left\""
                )));
            }
        };
        // A click counts only after its impression: none before, up to `window` after.
        self.join = WindowJoin::new("attribution", window, kind).before(0);
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let side = match event.input().as_deref() {
            Some("impressions") => Side::Left,
            Some("clicks") => Side::Right,
            other => {
                return Err(Error::fatal(format!(
                    "records from input {other:?}: this operator joins \"impressions\" and \"clicks\""
                )));
            }
        };
        let pairs = self.join.add(ctx, side, &event)?;
        emit(ctx, pairs);
        Ok(())
    }

    fn on_timer(&mut self, key: Vec<u8>, _at: i64, ctx: &mut Context) -> Result<(), Error> {
        if let Some(pairs) = self.join.on_timer(ctx, &key)? {
            emit(ctx, pairs);
        }
        Ok(())
    }
}

eddy_guest::export!(AdAttribution);
