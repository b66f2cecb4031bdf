//! Event-time windows over a store and timers: tumbling, sliding (hopping) and session
//! windows per event key, each folding its events with an [`Aggregate`] and closing once
//! the watermark passes its end, as Flink's window operator does.
//!
//! ```
//! use eddy_guest::prelude::*;
//! use eddy_guest::window::{Count, Windows};
//!
//! struct PerMinute(Windows);
//!
//! impl Operator for PerMinute {
//!     fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
//!         self.0.add(ctx, &event, &Count)?;
//!         Ok(())
//!     }
//!     fn on_timer(&mut self, key: Vec<u8>, at: i64, ctx: &mut Context) -> Result<(), Error> {
//!         for w in self.0.on_timer(ctx, &key, at)? {
//!             let text = format!("{}..{}: {}", w.start, w.end, Count::value(&w.acc));
//!             ctx.emit(Event::new(w.key, text).at(w.end - 1));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let op = PerMinute(Windows::tumbling(60_000));
//! let mut h = eddy_guest::testing::Harness::new(op).unwrap();
//! h.process(Event::new("home", "").at(5_000)).unwrap();
//! h.process(Event::new("home", "").at(59_000)).unwrap();
//! let out = h.advance_watermark(60_000).unwrap();
//! assert_eq!(out[0].event, Event::new("home", "0..60000: 2").at(59_999));
//! ```
//!
//! A window `[start, end)` closes when the watermark reaches `end`: by then every event
//! below `end` counts as late. With [`Windows::allowed_lateness`], its state is kept that
//! much longer, and a late event in it re-emits the window's updated result at once.
//! Events later than that are dropped ([`Added::dropped`]).
//!
//! State lives in one store (`windows` unless [`Windows::store`] names another): one
//! entry per open window, so windows survive restarts, savepoints and upgrades like any
//! state, and their timers with them.

use crate::{Context, Error, Event};

/// How a window's events fold into its accumulator (bytes, kept in the store).
pub trait Aggregate {
    /// Folds `event` into `acc` (`None` for a window's first event).
    fn add(&self, acc: Option<&[u8]>, event: &Event<'_>) -> Result<Vec<u8>, Error>;

    /// Joins two accumulators: session windows that an event bridges become one.
    fn merge(&self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Counts events; the accumulator is an 8-byte little-endian integer.
pub struct Count;

impl Count {
    /// The count an accumulator holds.
    pub fn value(acc: &[u8]) -> i64 {
        acc.try_into().map(i64::from_le_bytes).unwrap_or(0)
    }
}

impl Aggregate for Count {
    fn add(&self, acc: Option<&[u8]>, _event: &Event<'_>) -> Result<Vec<u8>, Error> {
        Ok((acc.map_or(0, Count::value) + 1).to_le_bytes().to_vec())
    }

    fn merge(&self, a: &[u8], b: &[u8]) -> Result<Vec<u8>, Error> {
        Ok((Count::value(a) + Count::value(b)).to_le_bytes().to_vec())
    }
}

/// A window's result: the event key, `[start, end)`, and its accumulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub key: Vec<u8>,
    pub start: i64,
    pub end: i64,
    pub acc: Vec<u8>,
    /// A late event updated a window that had already closed (allowed lateness).
    pub update: bool,
}

/// What [`Windows::add`] did with an event.
#[derive(Debug, Default)]
pub struct Added {
    /// Updated results of closed windows the (late) event still counted in.
    pub updates: Vec<Closed>,
    /// The event came too late for every window it belongs to.
    pub dropped: bool,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

/// Windows of one kind over a store; see the module docs.
#[derive(Debug, Clone)]
pub struct Windows {
    kind: Kind,
    lateness: i64,
    store: String,
}

impl Windows {
    /// Back-to-back windows of `size` ms: `[0, size)`, `[size, 2 size)`, ...
    pub fn tumbling(size: i64) -> Self {
        Self::of(Kind::Tumbling { size: size.max(1) })
    }

    /// Windows of `size` ms starting every `slide` ms; an event falls in `size / slide`
    /// of them.
    pub fn sliding(size: i64, slide: i64) -> Self {
        Self::of(Kind::Sliding {
            size: size.max(1),
            slide: slide.max(1),
        })
    }

    /// Per key, a window that lasts while events come less than `gap` ms apart: an
    /// event at `t` opens `[t, t + gap)`, and windows that overlap merge.
    pub fn session(gap: i64) -> Self {
        Self::of(Kind::Session { gap: gap.max(1) })
    }

    fn of(kind: Kind) -> Self {
        Windows {
            kind,
            lateness: 0,
            store: "windows".into(),
        }
    }

    /// Keeps closed windows `ms` longer for late events (default 0).
    pub fn allowed_lateness(mut self, ms: i64) -> Self {
        self.lateness = ms.max(0);
        self
    }

    /// The store holding the open windows (default `windows`).
    pub fn store(mut self, name: &str) -> Self {
        self.store = name.into();
        self
    }

    /// Puts `event` (by its key and timestamp) into its windows and arms their timers.
    pub fn add(
        &self,
        ctx: &mut Context,
        event: &Event<'_>,
        agg: &dyn Aggregate,
    ) -> Result<Added, Error> {
        let store = ctx.store(&self.store)?;
        let key: &[u8] = event.key.as_deref().unwrap_or_default();
        let ts = event.timestamp;
        let watermark = ctx.watermark();
        let mut added = Added::default();
        let mut any = false;
        let windows = match self.kind {
            Kind::Session { gap } => {
                if ts.saturating_add(gap).saturating_add(self.lateness) <= watermark {
                    return Ok(Added {
                        updates: Vec::new(),
                        dropped: true,
                    });
                }
                vec![self.session_for(ctx, key, ts, gap, agg)?]
            }
            _ => self.assign(ts),
        };
        for (start, end, acc) in windows {
            if end.saturating_add(self.lateness) <= watermark {
                continue; // its state is gone: too late
            }
            any = true;
            let id = entry_key(key, start);
            let previous = store.get(&id).map(|v| decode(&v)).transpose()?;
            let (closed, acc) = match (previous, acc) {
                (Some(p), None) => (p.closed, agg.add(Some(&p.acc), event)?),
                (Some(p), Some(merged)) => (p.closed, agg.add(Some(&merged), event)?),
                (None, Some(merged)) => (false, agg.add(Some(&merged), event)?),
                (None, None) => (false, agg.add(None, event)?),
            };
            store.set(&id, encode(end, closed, &acc));
            if closed {
                added.updates.push(Closed {
                    key: key.to_vec(),
                    start,
                    end,
                    acc,
                    update: true,
                });
                ctx.set_timer(&id, end.saturating_add(self.lateness));
            } else {
                ctx.set_timer(&id, end);
            }
        }
        added.dropped = !any;
        Ok(added)
    }

    /// Handles a timer the windows set: the results of windows that close at `at`.
    /// Timers of other origins are ignored (the operator may have its own).
    pub fn on_timer(&self, ctx: &mut Context, key: &[u8], at: i64) -> Result<Vec<Closed>, Error> {
        let Some((event_key, start)) = split_entry_key(key) else {
            return Ok(Vec::new());
        };
        let store = ctx.store(&self.store)?;
        let Some(entry) = store.get(key).map(|v| decode(&v)).transpose()? else {
            return Ok(Vec::new());
        };
        if entry.closed {
            // The end of the allowed lateness: forget the window.
            if at >= entry.end.saturating_add(self.lateness) {
                store.delete(key);
            }
            return Ok(Vec::new());
        }
        if at < entry.end {
            return Ok(Vec::new()); // an older timer of a session that grew since
        }
        if self.lateness > 0 {
            store.set(key, encode(entry.end, true, &entry.acc));
            ctx.set_timer(key, entry.end.saturating_add(self.lateness));
        } else {
            store.delete(key);
        }
        Ok(vec![Closed {
            key: event_key.to_vec(),
            start,
            end: entry.end,
            acc: entry.acc,
            update: false,
        }])
    }

    /// The tumbling or sliding windows holding `ts`, latest start first.
    fn assign(&self, ts: i64) -> Vec<(i64, i64, Option<Vec<u8>>)> {
        let (size, slide) = match self.kind {
            Kind::Tumbling { size } => (size, size),
            Kind::Sliding { size, slide } => (size, slide),
            Kind::Session { .. } => unreachable!("sessions are assigned by merging"),
        };
        let mut out = Vec::new();
        // Saturating and checked: a timestamp near the ends of time must not overflow (or
        // wrap around and loop); its windows are clamped there.
        let mut start = Some(ts.saturating_sub(ts.rem_euclid(slide)));
        while let Some(s) = start.filter(|s| *s > ts.saturating_sub(size)) {
            out.push((s, s.saturating_add(size), None));
            start = s.checked_sub(slide);
        }
        out
    }

    /// The session `ts` joins: `[ts, ts + gap)` merged with every open session of `key`
    /// it overlaps, whose entries and timers go. Returns the merged accumulator, if any.
    fn session_for(
        &self,
        ctx: &mut Context,
        key: &[u8],
        ts: i64,
        gap: i64,
        agg: &dyn Aggregate,
    ) -> Result<(i64, i64, Option<Vec<u8>>), Error> {
        let store = ctx.store(&self.store)?;
        let (mut start, mut end) = (ts, ts.saturating_add(gap));
        let mut parts = Vec::new();
        for (id, value) in store.scan_prefix(key_prefix(key)) {
            let (_, s) = split_entry_key(&id).ok_or_else(|| bad_entry(&id))?;
            let e = decode(&value)?;
            if s < end && start < e.end {
                parts.push((id, s, e));
            }
        }
        // One pass can miss a session that only the grown window reaches: repeat.
        loop {
            let before = (start, end);
            for (_, s, e) in &parts {
                start = start.min(*s);
                end = end.max(e.end);
            }
            if (start, end) == before {
                break;
            }
            for (id, value) in store.scan_prefix(key_prefix(key)) {
                let (_, s) = split_entry_key(&id).ok_or_else(|| bad_entry(&id))?;
                let e = decode(&value)?;
                if s < end && start < e.end && !parts.iter().any(|(p, _, _)| *p == id) {
                    parts.push((id, s, e));
                }
            }
        }
        let single_same_start = parts.len() == 1 && parts[0].1 == start;
        let mut merged: Option<Vec<u8>> = None;
        for (id, _, e) in parts {
            let timer_at = if e.closed {
                e.end.saturating_add(self.lateness)
            } else {
                e.end
            };
            ctx.delete_timer(&id, timer_at);
            if !single_same_start {
                store.delete(&id);
            }
            merged = Some(match merged {
                None => e.acc,
                Some(m) => agg.merge(&m, &e.acc)?,
            });
        }
        if single_same_start {
            // The session grows in place: `add` folds into its stored accumulator.
            return Ok((start, end, None));
        }
        Ok((start, end, merged))
    }
}

struct Entry {
    end: i64,
    closed: bool,
    acc: Vec<u8>,
}

fn encode(end: i64, closed: bool, acc: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(9 + acc.len());
    v.extend_from_slice(&end.to_le_bytes());
    v.push(closed as u8);
    v.extend_from_slice(acc);
    v
}

fn decode(v: &[u8]) -> Result<Entry, Error> {
    if v.len() < 9 {
        return Err(Error::Fatal(format!(
            "window store: an entry of {} bytes is not a window",
            v.len()
        )));
    }
    Ok(Entry {
        end: i64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
        closed: v[8] != 0,
        acc: v[9..].to_vec(),
    })
}

/// Entries sort by event key, then window start: `len(key) key start`, the start with
/// its sign bit flipped so negative times sort first.
fn key_prefix(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + key.len() + 8);
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

fn entry_key(key: &[u8], start: i64) -> Vec<u8> {
    let mut k = key_prefix(key);
    k.extend_from_slice(&((start as u64) ^ (1 << 63)).to_be_bytes());
    k
}

fn split_entry_key(id: &[u8]) -> Option<(&[u8], i64)> {
    let len = u32::from_be_bytes(id.get(..4)?.try_into().ok()?) as usize;
    let key = id.get(4..4 + len)?;
    let start: [u8; 8] = id.get(4 + len..)?.try_into().ok()?;
    Some((key, (u64::from_be_bytes(start) ^ (1 << 63)) as i64))
}

fn bad_entry(id: &[u8]) -> Error {
    Error::Fatal(format!("window store: key {id:?} is not a window's"))
}
