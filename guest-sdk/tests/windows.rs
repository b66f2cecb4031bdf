//! Windows against a brute-force computation over the sorted input: out-of-order events
//! within a fixed bound give exactly the windows of the same events in order.

use eddy_guest::prelude::*;
use eddy_guest::testing::Harness;
use eddy_guest::window::{Count, Windows};
use std::collections::BTreeMap;

/// Counts per key in the given windows; emits `start end count` at `end - 1`.
struct Counting(Windows);

impl Operator for Counting {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let added = self.0.add(ctx, &event, &Count)?;
        for w in added.updates {
            let text = format!("{} {} {} late", w.start, w.end, Count::value(&w.acc));
            ctx.emit(Event::new(w.key, text).at(w.end - 1));
        }
        if added.dropped {
            ctx.emit_to(
                "dropped",
                Event::new(event.key.clone().unwrap_or_default(), ""),
            );
        }
        Ok(())
    }

    fn on_timer(&mut self, key: Vec<u8>, at: i64, ctx: &mut Context) -> Result<(), Error> {
        for w in self.0.on_timer(ctx, &key, at)? {
            let text = format!("{} {} {}", w.start, w.end, Count::value(&w.acc));
            ctx.emit(Event::new(w.key, text).at(w.end - 1));
        }
        Ok(())
    }
}

/// A small deterministic generator (no dependency needed for this).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// `n` events over keys a..d, in time order with gaps, then shuffled within `bound` ms:
/// every event is at most `bound` older than the largest before it.
fn input(seed: u64, n: usize, bound: i64) -> Vec<(String, i64)> {
    let mut rng = Lcg(seed);
    let mut t = 1_000_000i64;
    let mut events: Vec<(String, i64)> = (0..n)
        .map(|_| {
            t += rng.next(400) as i64;
            let key = ["a", "b", "c", "d"][rng.next(4) as usize].to_string();
            (key, t)
        })
        .collect();
    // Swap neighbours whose times are within the bound.
    for _ in 0..n * 2 {
        let i = rng.next(n as u64 - 1) as usize;
        if events[i + 1].1 - events[i].1 <= bound {
            events.swap(i, i + 1);
        }
    }
    let mut max = i64::MIN;
    for (_, ts) in &events {
        assert!(
            *ts >= max.saturating_sub(bound),
            "the generator keeps the bound"
        );
        max = max.max(*ts);
    }
    events
}

/// Runs `events` with the host's watermark (largest time seen minus `bound`), then the
/// end of input; returns every emitted window as `(key, "start end count")`, sorted.
fn run(windows: Windows, events: &[(String, i64)], bound: i64) -> Vec<(String, String)> {
    let mut h = Harness::new(Counting(windows)).unwrap();
    let mut out = Vec::new();
    let mut max = i64::MIN;
    for (key, ts) in events {
        out.extend(h.process(Event::new(key.as_str(), "").at(*ts)).unwrap());
        max = max.max(*ts);
        out.extend(h.advance_watermark(max - bound).unwrap());
    }
    out.extend(h.advance_watermark(i64::MAX).unwrap());
    assert!(
        h.store("windows").is_empty(),
        "closed windows leave no state"
    );
    assert!(h.timers().is_empty());
    let mut results: Vec<(String, String)> = out
        .into_iter()
        .map(|o| {
            assert_eq!(o.port, None);
            (
                String::from_utf8(o.event.key.unwrap().into_owned()).unwrap(),
                String::from_utf8(o.event.value.into_owned()).unwrap(),
            )
        })
        .collect();
    results.sort();
    results
}

fn sorted_by_time(events: &[(String, i64)]) -> Vec<(String, i64)> {
    let mut e = events.to_vec();
    e.sort_by_key(|(k, t)| (*t, k.clone()));
    e
}

/// Brute force: every window `[start, start + size)` (starts every `slide`) with its
/// count of events per key.
fn brute_sliding(events: &[(String, i64)], size: i64, slide: i64) -> Vec<(String, String)> {
    let mut counts: BTreeMap<(String, i64), i64> = BTreeMap::new();
    for (key, ts) in events {
        let mut start = ts.div_euclid(slide) * slide;
        while start > ts - size {
            *counts.entry((key.clone(), start)).or_default() += 1;
            start -= slide;
        }
    }
    let mut out: Vec<(String, String)> = counts
        .into_iter()
        .map(|((k, s), n)| (k, format!("{s} {} {n}", s + size)))
        .collect();
    out.sort();
    out
}

/// Brute force: per key, events sorted by time split where they are `gap` or more apart.
fn brute_sessions(events: &[(String, i64)], gap: i64) -> Vec<(String, String)> {
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (k, t) in events {
        by_key.entry(k.clone()).or_default().push(*t);
    }
    let mut out = Vec::new();
    for (k, mut ts) in by_key {
        ts.sort();
        let (mut start, mut last, mut n) = (ts[0], ts[0], 0);
        for t in ts {
            if t - last >= gap {
                out.push((k.clone(), format!("{start} {} {n}", last + gap)));
                (start, n) = (t, 0);
            }
            last = t;
            n += 1;
        }
        out.push((k.clone(), format!("{start} {} {n}", last + gap)));
    }
    out.sort();
    out
}

#[test]
fn tumbling_windows_over_out_of_order_input_equal_the_sorted_computation() {
    for seed in 1..6 {
        let events = input(seed, 300, 900);
        let got = run(Windows::tumbling(1000), &events, 900);
        assert_eq!(got, brute_sliding(&events, 1000, 1000), "seed {seed}");
        assert_eq!(
            got,
            run(Windows::tumbling(1000), &sorted_by_time(&events), 0)
        );
    }
}

#[test]
fn sliding_windows_over_out_of_order_input_equal_the_sorted_computation() {
    for seed in 1..6 {
        let events = input(seed, 300, 700);
        let got = run(Windows::sliding(3000, 1000), &events, 700);
        assert_eq!(got, brute_sliding(&events, 3000, 1000), "seed {seed}");
    }
}

#[test]
fn session_windows_over_out_of_order_input_equal_the_sorted_computation() {
    for seed in 1..6 {
        let events = input(seed, 300, 900);
        // Gaps of 400 to 1600 ms between a key's events: sessions both split and merge,
        // and out of order, a late-arriving event bridges two sessions.
        let got = run(Windows::session(1000), &events, 900);
        assert_eq!(got, brute_sessions(&events, 1000), "seed {seed}");
    }
}

#[test]
fn allowed_lateness_updates_a_closed_window_and_later_events_are_dropped() {
    let mut h = Harness::new(Counting(Windows::tumbling(100).allowed_lateness(50))).unwrap();
    h.process(Event::new("k", "").at(10)).unwrap();
    let closed = h.advance_watermark(100).unwrap();
    assert_eq!(closed[0].event.value.as_ref(), b"0 100 1");
    // Within the allowed lateness: the window's result again, updated.
    let late = h.process(Event::new("k", "").at(20)).unwrap();
    assert_eq!(late[0].event.value.as_ref(), b"0 100 2 late");
    assert_eq!(late[0].event.timestamp, 99);
    // Past it the window is gone and the event is dropped.
    assert!(h.advance_watermark(150).unwrap().is_empty());
    assert!(h.store("windows").is_empty());
    let dropped = h.process(Event::new("k", "").at(30)).unwrap();
    assert_eq!(dropped[0].port.as_deref(), Some("dropped"));
}

#[test]
fn timestamps_at_the_ends_of_time_get_their_windows() {
    for windows in [Windows::tumbling(1000), Windows::sliding(3000, 1000)] {
        let mut h = Harness::new(Counting(windows)).unwrap();
        h.process(Event::new("k", "").at(i64::MIN + 5)).unwrap();
        h.process(Event::new("k", "").at(i64::MAX - 5)).unwrap();
        let out = h.advance_watermark(i64::MAX).unwrap();
        assert!(!out.is_empty());
    }
}
