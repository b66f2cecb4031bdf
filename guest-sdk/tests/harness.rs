//! The SDK's per-record API end to end, natively: typed state, scans, timers, ports,
//! migration, errors, all through the same flat-batch path the Wasm host uses.

use eddy_guest::prelude::*;
use eddy_guest::testing::Harness;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Session {
    clicks: u32,
    last: i64,
}

/// Sessionizes clicks per user: a session closes 10 ms after its last click.
#[derive(Default)]
struct Sessions {
    gap: i64,
}

impl Operator for Sessions {
    const STATE_VERSION: u32 = 2;

    fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.gap = config.parse_or("gap", 10)?;
        Ok(())
    }

    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let user = event
            .key_str()?
            .ok_or_else(|| Error::bad_input("clicks need a user key"))?
            .to_string();
        let sessions = ctx.store("sessions")?;
        let mut s = sessions.get_json::<Session>(&user)?.unwrap_or(Session {
            clicks: 0,
            last: event.timestamp,
        });
        if s.clicks > 0 {
            ctx.delete_timer(&user, s.last + self.gap);
        }
        s.clicks += 1;
        s.last = event.timestamp;
        sessions.set_json(&user, &s)?;
        ctx.set_timer(&user, s.last + self.gap);
        if event.timestamp < ctx.watermark() {
            ctx.emit_to("late", Event::new(user, "late click"));
        }
        Ok(())
    }

    fn on_timer(&mut self, key: Vec<u8>, at: i64, ctx: &mut Context) -> Result<(), Error> {
        let sessions = ctx.store("sessions")?;
        let s: Session = sessions
            .get_json(&key)?
            .ok_or_else(|| Error::fatal("timer without a session"))?;
        sessions.delete(&key);
        ctx.emit(Event::new(key, format!("{} clicks", s.clicks)).at(at));
        Ok(())
    }

    fn migrate(
        &mut self,
        _store: &str,
        _key: &[u8],
        value: Vec<u8>,
        from_version: u32,
    ) -> Result<Option<Vec<u8>>, Error> {
        // Version 1 stored the click count as a decimal string.
        if from_version == 1 {
            let clicks: u32 = std::str::from_utf8(&value)?.parse()?;
            return Ok(Some(
                serde_json::to_vec(&Session { clicks, last: 0 }).unwrap(),
            ));
        }
        Ok(Some(value))
    }
}

#[test]
fn sessions_close_when_the_watermark_passes_their_gap() {
    let mut h = Harness::with_config(Sessions::default(), &[("gap", "10")]).unwrap();
    assert_eq!(h.state_version(), 2);
    h.process(Event::new("ann", "click").at(100)).unwrap();
    h.process(Event::new("bob", "click").at(103)).unwrap();
    h.process(Event::new("ann", "click").at(105)).unwrap();
    assert_eq!(
        h.timers(),
        vec![(113, b"bob".to_vec()), (115, b"ann".to_vec())]
    );
    assert!(h.advance_watermark(112).unwrap().is_empty());
    let closed = h.advance_watermark(120).unwrap();
    let got: Vec<(String, String, i64)> = closed
        .iter()
        .map(|o| {
            (
                o.event.key_str().unwrap().unwrap().to_string(),
                o.event.value_str().unwrap().to_string(),
                o.event.timestamp,
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("bob".into(), "1 clicks".into(), 113),
            ("ann".into(), "2 clicks".into(), 115)
        ]
    );
    assert!(h.store("sessions").is_empty());
    // A click behind the watermark goes to the `late` port.
    let out = h.process(Event::new("cy", "click").at(50)).unwrap();
    assert_eq!(out[0].port.as_deref(), Some("late"));
}

#[test]
fn bad_records_fail_with_their_index() {
    let mut h = Harness::new(Sessions::default()).unwrap();
    let err = h
        .process_batch(&[Event::new("a", "x").at(1), Event::keyless("no user").at(2)])
        .unwrap_err();
    assert_eq!(err.0, 1);
    assert!(matches!(err.1, Error::BadInput(ref m) if m.contains("user key")));
}

#[test]
fn bad_config_stops_init() {
    let err = Harness::with_config(Sessions::default(), &[("gap", "soon")])
        .err()
        .unwrap();
    assert!(err.message().contains("config `gap`"), "{err}");
}

#[test]
fn migration_rewrites_every_value() {
    let mut h = Harness::new(Sessions::default()).unwrap();
    h.put("sessions", "ann", "7");
    h.migrate("sessions", 1).unwrap();
    let v = &h.store("sessions")[&b"ann".to_vec()];
    assert_eq!(
        serde_json::from_slice::<Session>(v).unwrap(),
        Session { clicks: 7, last: 0 }
    );
}

#[derive(Default)]
struct Scanner;

impl Operator for Scanner {
    fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
        let s = ctx.store("s")?;
        match event.value_str()? {
            "fill" => {
                let keys: Vec<String> = (0..600).map(|i| format!("k{i:04}")).collect();
                let entries: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
                s.set_many(&entries);
                s.set("other", "x");
            }
            "count" => {
                // More than one host page (256 entries) of scan results.
                let n = s.scan_prefix("k").count();
                ctx.emit(Event::keyless(n.to_string()));
            }
            "trim" => s.delete_range("k0100", Some(b"k0500")),
            "many" => {
                let got = s.get_many(&["k0001", "nope"]);
                let n = s.increment_many(&["c1", "c2"], &[2, 3])?;
                ctx.emit(Event::keyless(format!(
                    "{:?} {:?}",
                    got.iter().map(Option::is_some).collect::<Vec<_>>(),
                    n
                )));
            }
            _ => return Err(Error::bad_input("unknown command")),
        }
        Ok(())
    }
}

#[test]
fn scans_page_through_large_ranges_and_see_deletes() {
    let mut h = Harness::new(Scanner).unwrap();
    h.process(Event::keyless("fill")).unwrap();
    assert_eq!(
        h.process(Event::keyless("count")).unwrap()[0]
            .event
            .value_str()
            .unwrap(),
        "600"
    );
    h.process(Event::keyless("trim")).unwrap();
    assert_eq!(
        h.process(Event::keyless("count")).unwrap()[0]
            .event
            .value_str()
            .unwrap(),
        "200"
    );
    assert_eq!(
        h.process(Event::keyless("many")).unwrap()[0]
            .event
            .value_str()
            .unwrap(),
        "[true, false] [2, 3]"
    );
}
