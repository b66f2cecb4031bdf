//! A windowed stream–stream join (`eddy_guest::join::WindowJoin`): records of two inputs
//! with the same key whose times are close enough meet, as in Kafka Streams'
//! KStream–KStream join.
//!
//! Each side's records wait in a store of their own (`<name>.left`, `<name>.right`:
//! `len(key) key time` → the records at that time, each with whether it met one) for as
//! long as a record of the other side may still arrive within the window, then leave by
//! an event-time timer. A record that arrives meets the other side's waiting records at
//! once (an inner join's results come then); a left (or outer) join also emits, when a
//! record's window closes, the records of its side that met none.
//!
//! What a join emits depends only on which records are late, not on batch boundaries or
//! restarts, when the host drops or sets aside late records (`late_events = "drop"` or
//! `"side-output"`): a record at or above the watermark finds every partner still here.

use crate::{Context, Error, Event};

/// Which input a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// Which records a windowed join emits besides the pairs that met.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowJoinKind {
    /// Only pairs.
    Inner,
    /// Pairs, and left records that met no right one, when their window closes.
    Left,
    /// Pairs, and records of either side that met none, when their window closes.
    Outer,
}

/// One record of a side, as the join keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub value: Vec<u8>,
    pub timestamp: i64,
}

/// What the join emits: a left and a right record that met, or (left and outer joins)
/// a record that met none, its other side `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: Vec<u8>,
    pub left: Option<Joined>,
    pub right: Option<Joined>,
}

/// A windowed join: a right record at `r` meets a left record at `l` of the same key
/// when `l - before <= r <= l + after`.
#[derive(Debug, Clone)]
pub struct WindowJoin {
    name: String,
    before: i64,
    after: i64,
    grace: i64,
    kind: WindowJoinKind,
}

/// Timer keys of a join start with this and its name, so `on_timer` knows its own.
const TIMER_TAG: &[u8] = b"\0wjoin\0";

impl WindowJoin {
    /// A join of records at most `window` ms apart (either way), kept in the stores
    /// `<name>.left` and `<name>.right`.
    pub fn new(name: &str, window: i64, kind: WindowJoinKind) -> Self {
        let window = window.max(0);
        WindowJoin {
            name: name.to_string(),
            before: window,
            after: window,
            grace: 0,
            kind,
        }
    }

    pub fn inner(name: &str, window: i64) -> Self {
        Self::new(name, window, WindowJoinKind::Inner)
    }

    pub fn left(name: &str, window: i64) -> Self {
        Self::new(name, window, WindowJoinKind::Left)
    }

    pub fn outer(name: &str, window: i64) -> Self {
        Self::new(name, window, WindowJoinKind::Outer)
    }

    /// How long before a left record a right one may be (default: the window).
    pub fn before(mut self, ms: i64) -> Self {
        self.before = ms.max(0);
        self
    }

    /// How long after a left record a right one may be (default: the window).
    pub fn after(mut self, ms: i64) -> Self {
        self.after = ms.max(0);
        self
    }

    /// How much longer records wait after their window (for records the watermark
    /// lets through late).
    pub fn grace(mut self, ms: i64) -> Self {
        self.grace = ms.max(0);
        self
    }

    /// Adds a record of `side` and returns the pairs it makes with the other side's
    /// waiting records, in their time order. A keyless record is bad input.
    pub fn add(
        &self,
        ctx: &mut Context,
        side: Side,
        event: &Event<'_>,
    ) -> Result<Vec<Pair>, Error> {
        let Some(key) = event.key.as_deref() else {
            return Err(Error::bad_input(format!(
                "join {}: a record has no key",
                self.name
            )));
        };
        let t = event.timestamp;
        let (lo, hi) = match side {
            Side::Left => (t.saturating_sub(self.before), t.saturating_add(self.after)),
            Side::Right => (t.saturating_sub(self.after), t.saturating_add(self.before)),
        };
        let other = ctx.store(&self.store(other_side(side)))?;
        let prefix = key_prefix(key);
        let start = entry_key(&prefix, lo);
        // Just past the key of time `hi` (the keys of one time have no suffix).
        let mut end = entry_key(&prefix, hi);
        end.push(0);
        let mut pairs = Vec::new();
        let mine = Joined {
            value: event.value.to_vec(),
            timestamp: t,
        };
        let found: Vec<(Vec<u8>, Vec<u8>)> = other.scan(&start, Some(&end)).collect();
        for (k, v) in found {
            let at = entry_time(&k, prefix.len())?;
            let mut records = decode(&v, &self.name)?;
            for (met, value) in &mut records {
                *met = true;
                let theirs = Joined {
                    value: value.clone(),
                    timestamp: at,
                };
                pairs.push(match side {
                    Side::Left => pair(key, Some(mine.clone()), Some(theirs)),
                    Side::Right => pair(key, Some(theirs), Some(mine.clone())),
                });
            }
            if self.kind != WindowJoinKind::Inner {
                other.set(&k, encode(&records));
            }
        }
        // This record waits for the other side's records still to come.
        let mine_store = ctx.store(&self.store(side))?;
        let k = entry_key(&prefix, t);
        let mut records = match mine_store.get(&k) {
            Some(v) => decode(&v, &self.name)?,
            None => Vec::new(),
        };
        records.push((!pairs.is_empty(), event.value.to_vec()));
        mine_store.set(&k, encode(&records));
        let closes = match side {
            Side::Left => t.saturating_add(self.after),
            Side::Right => t.saturating_add(self.before),
        };
        // Kept until the watermark passes the window (and the grace): a record that is
        // not late is at or above the watermark, so it finds every partner still here.
        let at = closes.saturating_add(self.grace).saturating_add(1);
        ctx.set_timer(self.timer_key(side, &k), at);
        Ok(pairs)
    }

    /// Call from `on_timer`: when the timer is one of this join's, drops the records
    /// whose window closed and returns those that met none (left and outer joins);
    /// `None` for another timer.
    pub fn on_timer(&self, ctx: &mut Context, key: &[u8]) -> Result<Option<Vec<Pair>>, Error> {
        let tag = self.tag();
        let Some(rest) = key.strip_prefix(tag.as_slice()) else {
            return Ok(None);
        };
        let (side, entry) = match rest.split_first() {
            Some((b'l', e)) => (Side::Left, e),
            Some((b'r', e)) => (Side::Right, e),
            _ => {
                return Err(Error::fatal(format!(
                    "join {}: timer key {key:?} is not its own",
                    self.name
                )));
            }
        };
        let store = ctx.store(&self.store(side))?;
        let Some(v) = store.get(entry) else {
            return Ok(Some(Vec::new()));
        };
        store.delete(entry);
        let emits = matches!(
            (self.kind, side),
            (WindowJoinKind::Outer, _) | (WindowJoinKind::Left, Side::Left)
        );
        if !emits {
            return Ok(Some(Vec::new()));
        }
        let (user_key, at) = split_entry(entry).ok_or_else(|| bad_entry(&self.name, entry))?;
        let mut out = Vec::new();
        for (met, value) in decode(&v, &self.name)? {
            if met {
                continue;
            }
            let alone = Some(Joined {
                value,
                timestamp: at,
            });
            out.push(match side {
                Side::Left => pair(user_key, alone, None),
                Side::Right => pair(user_key, None, alone),
            });
        }
        Ok(Some(out))
    }

    fn store(&self, side: Side) -> String {
        match side {
            Side::Left => format!("{}.left", self.name),
            Side::Right => format!("{}.right", self.name),
        }
    }

    fn tag(&self) -> Vec<u8> {
        let mut t = TIMER_TAG.to_vec();
        t.extend_from_slice(self.name.as_bytes());
        t.push(0);
        t
    }

    fn timer_key(&self, side: Side, entry: &[u8]) -> Vec<u8> {
        let mut k = self.tag();
        k.push(if side == Side::Left { b'l' } else { b'r' });
        k.extend_from_slice(entry);
        k
    }
}

fn other_side(side: Side) -> Side {
    match side {
        Side::Left => Side::Right,
        Side::Right => Side::Left,
    }
}

fn pair(key: &[u8], left: Option<Joined>, right: Option<Joined>) -> Pair {
    Pair {
        key: key.to_vec(),
        left,
        right,
    }
}

/// `len(key) key`: a key's records sort together, by time.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 8);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// The time with its sign bit flipped, so that byte order is time order.
fn entry_key(prefix: &[u8], at: i64) -> Vec<u8> {
    let mut k = prefix.to_vec();
    k.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn entry_time(entry: &[u8], prefix_len: usize) -> Result<i64, Error> {
    let b: [u8; 8] = entry
        .get(prefix_len..)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::fatal(format!("join store: key {entry:?} is not a join's")))?;
    Ok((u64::from_be_bytes(b) ^ (1 << 63)) as i64)
}

fn split_entry(entry: &[u8]) -> Option<(&[u8], i64)> {
    let len = u32::from_be_bytes(entry.get(..4)?.try_into().ok()?) as usize;
    let key = entry.get(4..4 + len)?;
    let at: [u8; 8] = entry.get(4 + len..)?.try_into().ok()?;
    Some((key, (u64::from_be_bytes(at) ^ (1 << 63)) as i64))
}

/// The records at one time: each `met (1 byte) len (4, big-endian) value`.
fn encode(records: &[(bool, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (met, v) in records {
        out.push(u8::from(*met));
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn decode(mut b: &[u8], name: &str) -> Result<Vec<(bool, Vec<u8>)>, Error> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let bad = || Error::fatal(format!("join {name}: a stored record is damaged"));
        let met = *b.first().ok_or_else(bad)? != 0;
        let len =
            u32::from_be_bytes(b.get(1..5).ok_or_else(bad)?.try_into().expect("4 bytes")) as usize;
        let value = b.get(5..5 + len).ok_or_else(bad)?;
        out.push((met, value.to_vec()));
        b = &b[5 + len..];
    }
    Ok(out)
}

fn bad_entry(name: &str, entry: &[u8]) -> Error {
    Error::fatal(format!("join {name}: timer key {entry:?} names no record"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Operator;
    use crate::testing::Harness;

    /// Impressions (left) and clicks (right) by ad, within 10 ms; emits `l|r` per pair,
    /// `l|-` / `-|r` for records that met none.
    struct Ads(WindowJoin);

    fn show(j: Option<&Joined>) -> String {
        j.map_or("-".into(), |j| {
            format!("{}@{}", String::from_utf8_lossy(&j.value), j.timestamp)
        })
    }

    fn emit(ctx: &mut Context, pairs: Vec<Pair>) {
        for p in pairs {
            let v = format!("{}|{}", show(p.left.as_ref()), show(p.right.as_ref()));
            ctx.emit(Event::new(p.key, v));
        }
    }

    impl Operator for Ads {
        fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
            let side = if event.input().as_deref() == Some("clicks") {
                Side::Right
            } else {
                Side::Left
            };
            let pairs = self.0.add(ctx, side, &event)?;
            emit(ctx, pairs);
            Ok(())
        }

        fn on_timer(&mut self, key: Vec<u8>, _at: i64, ctx: &mut Context) -> Result<(), Error> {
            if let Some(pairs) = self.0.on_timer(ctx, &key)? {
                emit(ctx, pairs);
            }
            Ok(())
        }
    }

    fn values(out: Vec<crate::testing::Output>) -> Vec<String> {
        out.into_iter()
            .map(|o| o.event.value_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn records_within_the_window_meet_either_way_round() {
        let mut h = Harness::new(Ads(WindowJoin::inner("ads", 10))).unwrap();
        assert!(
            h.process_from("impressions", Event::new("a", "i1").at(100))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            values(
                h.process_from("clicks", Event::new("a", "c1").at(105))
                    .unwrap()
            ),
            ["i1@100|c1@105"]
        );
        // Another key, and a click too late for i1.
        assert!(
            h.process_from("clicks", Event::new("b", "c2").at(106))
                .unwrap()
                .is_empty()
        );
        assert!(
            h.process_from("clicks", Event::new("a", "c3").at(111))
                .unwrap()
                .is_empty()
        );
        // A click before its impression, within the window.
        assert_eq!(
            values(
                h.process_from("impressions", Event::new("a", "i2").at(112))
                    .unwrap()
            ),
            ["i2@112|c1@105", "i2@112|c3@111"]
        );
        // The watermark passes: the records leave, and nothing more meets them.
        assert!(h.advance_watermark(200).unwrap().is_empty());
        assert!(h.store("ads.left").is_empty() && h.store("ads.right").is_empty());
        assert!(
            h.process_from("clicks", Event::new("a", "c4").at(113))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn left_and_outer_joins_emit_the_records_that_met_none_when_their_window_closes() {
        let mut h = Harness::new(Ads(WindowJoin::left("ads", 10))).unwrap();
        h.process_from("impressions", Event::new("a", "i1").at(100))
            .unwrap();
        h.process_from("impressions", Event::new("a", "i2").at(100))
            .unwrap();
        h.process_from("impressions", Event::new("b", "i3").at(120))
            .unwrap();
        assert_eq!(
            values(
                h.process_from("clicks", Event::new("a", "c1").at(104))
                    .unwrap()
            ),
            ["i1@100|c1@104", "i2@100|c1@104"]
        );
        h.process_from("clicks", Event::new("c", "c2").at(125))
            .unwrap();
        assert!(
            h.advance_watermark(110).unwrap().is_empty(),
            "the window of i1, i2 closes after 110"
        );
        assert_eq!(values(h.advance_watermark(1_000).unwrap()), ["i3@120|-"]);

        let mut h = Harness::new(Ads(WindowJoin::outer("ads", 10))).unwrap();
        h.process_from("impressions", Event::new("b", "i3").at(120))
            .unwrap();
        h.process_from("clicks", Event::new("c", "c2").at(125))
            .unwrap();
        let mut out = values(h.advance_watermark(1_000).unwrap());
        out.sort();
        assert_eq!(out, ["-|c2@125", "i3@120|-"]);
    }

    #[test]
    fn before_and_after_bound_the_window_each_way() {
        // Clicks up to 10 ms after an impression, none before it.
        let join = WindowJoin::inner("ads", 10).before(0);
        let mut h = Harness::new(Ads(join)).unwrap();
        h.process_from("clicks", Event::new("a", "c0").at(95))
            .unwrap();
        assert!(
            h.process_from("impressions", Event::new("a", "i1").at(100))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            values(
                h.process_from("clicks", Event::new("a", "c1").at(110))
                    .unwrap()
            ),
            ["i1@100|c1@110"]
        );
        let err = h
            .process_from("clicks", Event::keyless("x").at(1))
            .unwrap_err();
        assert!(err.message().contains("no key"), "{err:?}");
    }
}
