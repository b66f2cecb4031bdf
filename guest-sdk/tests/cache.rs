//! The stores' caches inside the guest, natively: values kept across batches only while
//! the host forgot nothing, failed batches and timers leaving no trace, scans, range
//! deletes and `get_many` seeing the batch's own writes, and the bounds.

use eddy_guest::prelude::*;
use eddy_guest::testing::Harness;

/// Commands in the event's value, one per word, on the key's store entry:
/// `inc` (emits the count), `get` (emits the value or `-`), `set:V`, `del`, `fail`,
/// `scan` (emits `k=v` for every entry), `clear` (deletes every key), `many` (emits the
/// key's value read with `get_many`), `timer:AT`, `bulk:N` (increments `b0`..`bN`).
#[derive(Default)]
struct Commands;

fn show(v: Option<Vec<u8>>) -> String {
    match v {
        None => "-".into(),
        Some(v) if v.len() == 8 => i64::from_le_bytes(v.try_into().unwrap()).to_string(),
        Some(v) => String::from_utf8_lossy(&v).into_owned(),
    }
}

impl Operator for Commands {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let store = ctx.store("s")?;
        let key = event.key_str()?.unwrap_or("k").to_string();
        for cmd in event.value_str()?.split_whitespace() {
            let out = match cmd.split_once(':') {
                Some(("set", v)) => {
                    store.set(&key, v);
                    continue;
                }
                Some(("timer", at)) => {
                    ctx.set_timer(&key, at.parse()?);
                    continue;
                }
                Some(("bulk", n)) => {
                    for i in 0..n.parse::<u32>()? {
                        store.increment(format!("b{i}"), 1)?;
                    }
                    continue;
                }
                _ => match cmd {
                    "inc" => store.increment(&key, 1)?.to_string(),
                    "get" => show(store.get(&key)),
                    "del" => {
                        store.delete(&key);
                        continue;
                    }
                    "fail" => return Err(Error::bad_input("asked to fail")),
                    "scan" => store
                        .scan(b"", None)
                        .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(&k), show(Some(v))))
                        .collect::<Vec<_>>()
                        .join(","),
                    "clear" => {
                        store.delete_range(b"", None);
                        continue;
                    }
                    "many" => show(store.get_many(&[key.as_bytes()]).remove(0)),
                    other => return Err(Error::fatal(format!("unknown command {other}"))),
                },
            };
            ctx.emit(Event::new(key.clone(), out));
        }
        Ok(())
    }

    fn on_timer(&mut self, key: Vec<u8>, _at: i64, ctx: &mut Context) -> Result<(), Error> {
        let store = ctx.store("s")?;
        let n = store.increment(&key, 100)?;
        ctx.emit(Event::new(key, n.to_string()));
        if n >= 1000 {
            return Err(Error::bad_input("timer failed"));
        }
        Ok(())
    }
}

fn values(out: &[eddy_guest::testing::Output]) -> Vec<String> {
    out.iter()
        .map(|o| String::from_utf8_lossy(&o.event.value).into_owned())
        .collect()
}

fn run(h: &mut Harness<Commands>, key: &str, cmds: &str) -> Vec<String> {
    values(&h.process(Event::new(key, cmds)).unwrap())
}

fn counter(h: &Harness<Commands>, key: &str) -> Option<i64> {
    h.store("s")
        .get(key.as_bytes())
        .map(|v| i64::from_le_bytes(v.as_slice().try_into().unwrap()))
}

#[test]
fn counts_carry_across_batches_and_reach_the_store_at_each_batch_end() {
    let mut h = Harness::new(Commands).unwrap();
    assert_eq!(run(&mut h, "a", "inc inc"), ["1", "2"]);
    assert_eq!(counter(&h, "a"), Some(2));
    assert_eq!(run(&mut h, "a", "inc get"), ["3", "3"]);
    assert_eq!(counter(&h, "a"), Some(3));
}

#[test]
fn a_failed_batch_leaves_nothing_behind_in_the_cache() {
    let mut h = Harness::new(Commands).unwrap();
    run(&mut h, "a", "inc");
    let err = h
        .process_batch(&[Event::new("a", "inc inc"), Event::new("a", "inc fail")])
        .unwrap_err();
    assert_eq!(err.0, 1);
    assert_eq!(counter(&h, "a"), Some(1));
    // The next batch counts from the host's value, not from the failed batch's 4.
    assert_eq!(run(&mut h, "a", "inc"), ["2"]);
}

#[test]
fn writes_made_outside_the_operator_are_seen_by_the_next_batch() {
    let mut h = Harness::new(Commands).unwrap();
    assert_eq!(run(&mut h, "a", "inc"), ["1"]);
    h.put("s", "a", 41i64.to_le_bytes());
    assert_eq!(run(&mut h, "a", "inc"), ["42"]);
}

#[test]
fn scans_range_deletes_and_get_many_see_the_batch_s_own_writes() {
    let mut h = Harness::new(Commands).unwrap();
    run(&mut h, "x", "inc");
    assert_eq!(run(&mut h, "y", "set:hello scan"), ["x=1,y=hello"]);
    assert_eq!(run(&mut h, "z", "inc many del many"), ["1", "1", "-"]);
    assert_eq!(run(&mut h, "y", "clear get inc scan"), ["-", "1", "y=1"]);
    assert_eq!(h.store("s").len(), 1);
    assert_eq!(counter(&h, "y"), Some(1));
}

#[test]
fn a_value_that_is_not_a_counter_is_refused_as_the_host_refuses_it() {
    let mut h = Harness::new(Commands).unwrap();
    run(&mut h, "t", "set:abc");
    let err = h.process(Event::new("t", "inc")).unwrap_err();
    assert!(
        matches!(err, Error::BadInput(ref m) if m.contains("3 bytes, not an 8-byte little-endian counter")),
        "{err:?}"
    );
    // Also when the text was written in the same batch, before the increment.
    let err = h.process(Event::new("u", "set:abcd inc")).unwrap_err();
    assert!(
        matches!(err, Error::BadInput(ref m) if m.contains("4 bytes")),
        "{err:?}"
    );
    assert_eq!(h.store("s").get(&b"u"[..]), None);
    // An 8-byte value written as bytes is a counter.
    assert_eq!(
        run(&mut h, "v", "set:12345678 inc"),
        ["4050765991979987506"]
    );
}

#[test]
fn timers_start_from_the_host_s_values_and_a_failed_one_leaves_no_trace() {
    let mut h = Harness::new(Commands).unwrap();
    assert_eq!(run(&mut h, "a", "inc timer:10"), ["1"]);
    assert_eq!(values(&h.advance_watermark(10).unwrap()), ["101"]);
    assert_eq!(run(&mut h, "a", "inc"), ["102"]);
    h.put("s", "a", 950i64.to_le_bytes());
    run(&mut h, "a", "timer:20");
    assert!(h.advance_watermark(20).is_err());
    assert_eq!(counter(&h, "a"), Some(950));
    assert_eq!(h.timers(), [(20, b"a".to_vec())]);
    assert_eq!(run(&mut h, "a", "inc"), ["951"]);
}

#[test]
fn more_keys_than_the_cache_holds_keep_exact_counts() {
    let mut h = Harness::new(Commands).unwrap();
    // Past the cache's 65,536 entries within one batch, then again across batches.
    run(&mut h, "k", "bulk:70000");
    run(&mut h, "k", "bulk:70000 bulk:10");
    let store = h.store("s");
    assert_eq!(store.len(), 70_000);
    assert_eq!(counter(&h, "b0"), Some(3));
    assert_eq!(counter(&h, "b9"), Some(3));
    assert_eq!(counter(&h, "b10"), Some(2));
    assert_eq!(counter(&h, "b69999"), Some(2));
    assert!(store.iter().all(|(k, v)| { v.len() == 8 && !k.is_empty() }));
}
