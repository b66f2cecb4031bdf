//! Tasks over real components: atomic commits, failure isolation and error policies,
//! timers, side outputs, chains.

use crate::runtime::Fixture;
use eddy_host::control::{LateEvents, OnError};
use eddy_host::io::{IoError, Outputs, Sink, SourceBatch, TaskSource, watermark_record};
use eddy_host::log::Signal;
use eddy_host::record::Record;
use eddy_host::record::batch;
use eddy_host::runtime::TaskInfo;
use eddy_host::state::{Commit, TaskId};
use eddy_host::task::{
    Inputs, Operator, StageClock, Step, Task, TaskConfig, TaskError, TaskHandle, TaskRunner,
    WasmOperator,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Default)]
struct Collect {
    main: Vec<Record>,
    side: Vec<(String, Record)>,
    dead: Vec<Record>,
}

impl Collect {
    fn values(&self) -> Vec<String> {
        self.main
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).into_owned())
            .collect()
    }
}

impl Sink for Collect {
    fn commit(
        &mut self,
        commit: Commit,
        outputs: Vec<Outputs>,
        _changes: Vec<eddy_host::state::changelog::OperatorChanges>,
    ) -> Result<(), IoError> {
        commit.write()?;
        for o in outputs {
            self.main.extend(batch::records(&o.main));
            self.side.extend(o.side);
            self.dead.extend(o.dead);
        }
        Ok(())
    }
}

fn config(policy: OnError) -> TaskConfig {
    TaskConfig {
        policy,
        ..TaskConfig::default()
    }
}

/// Processes a batch and commits it.
fn run(t: &mut Task, source: &SourceBatch, sink: &mut Collect) -> Result<(), TaskError> {
    t.process(source, sink)?;
    t.flush(sink)
}

fn operator(fx: &Fixture, guest: &str, id: &str) -> Box<dyn Operator> {
    let info = TaskInfo {
        pipeline: "p".into(),
        operator: id.into(),
        version: 1,
        partition: 0,
        partition_count: 1,
    };
    Box::new(
        WasmOperator::start(
            fx.component(guest),
            info,
            vec![],
            fx.state(id, 0),
            fx.runtime.default_limits(),
        )
        .map_err(|(e, _)| e)
        .unwrap(),
    )
}

fn task(fx: &Fixture, policy: OnError) -> Task {
    Task::new(
        TaskId::new("p", 0),
        vec![operator(fx, "fixture-probe", "probe")],
        config(policy),
        fx.db.clone(),
    )
    .unwrap()
}

/// A source batch of commands at consecutive offsets from `first`, timestamps = offsets.
fn source(first: u64, commands: &[&str]) -> SourceBatch {
    let records: Vec<Record> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| Record {
            key: None,
            value: c.as_bytes().to_vec(),
            timestamp: first as i64 + i as i64,
            headers: vec![],
        })
        .collect();
    SourceBatch {
        events: batch::from_records(&records),
        offsets: (first..first + commands.len() as u64).collect(),
        source: 0,
    }
}

fn get(t: &mut Task, store: &str, key: &str) -> Option<String> {
    let state = t.operators_mut()[0].state();
    let id = state.open_store(store).unwrap().unwrap();
    state
        .get(id, key.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

#[test]
fn a_failed_batch_leaves_state_position_and_output_unchanged() {
    let fx = Fixture::new();
    for mode in ["trap", "bad", "fatal"] {
        let mut t = task(&fx, OnError::Fail);
        let mut sink = Collect::default();
        let err = run(
            &mut t,
            &source(0, &[&format!("setfail s k v {mode}")]),
            &mut sink,
        )
        .unwrap_err();
        assert!(
            matches!(err, TaskError::Record { offset: 0, .. }),
            "{mode}: {err}"
        );
        assert_eq!(get(&mut t, "s", "k"), None, "{mode}");
        assert_eq!(t.position().offset, 0, "{mode}");
        assert!(sink.main.is_empty(), "{mode}");
        // And nothing reached the database: a fresh task sees the same.
        let mut fresh = task(&fx, OnError::Fail);
        assert_eq!(fresh.position().offset, 0);
        assert_eq!(get(&mut fresh, "s", "k"), None);
    }
}

#[test]
fn records_before_a_failure_commit_and_the_policy_handles_the_failing_one() {
    let cases = [(OnError::Skip, 0usize), (OnError::DeadLetter, 1)];
    for (policy, dead) in cases {
        let fx = Fixture::new();
        let mut t = task(&fx, policy);
        let mut sink = Collect::default();
        run(
            &mut t,
            &source(10, &["set s a 1", "bad wrong shape", "set s b 2", "hello"]),
            &mut sink,
        )
        .unwrap();
        assert_eq!(get(&mut t, "s", "a").as_deref(), Some("1"));
        assert_eq!(get(&mut t, "s", "b").as_deref(), Some("2"));
        assert_eq!(t.position().offset, 14);
        assert_eq!(sink.values(), ["hello"]);
        assert_eq!(sink.dead.len(), dead, "{policy:?}");
        assert_eq!(t.stats().errors, 1);
        if let Some(d) = sink.dead.first() {
            assert_eq!(d.value, b"bad wrong shape");
            let header = |n: &str| {
                d.headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            assert!(header("eddy.error").unwrap().contains("wrong shape"));
            assert_eq!(header("eddy.operator").as_deref(), Some("probe@1"));
            assert_eq!(header("eddy.offset").as_deref(), Some("11"));
        }
    }
    // With `fail`, the records before the failure still commit; the task stops there.
    let fx = Fixture::new();
    let mut t = task(&fx, OnError::Fail);
    let err = run(
        &mut t,
        &source(10, &["set s a 1", "bad wrong shape", "set s b 2"]),
        &mut Collect::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "operator probe@1: process failed on record 11 of partition 0: bad input: wrong shape"
    );
    assert_eq!(get(&mut t, "s", "a").as_deref(), Some("1"));
    assert_eq!(get(&mut t, "s", "b"), None);
    assert_eq!(t.position().offset, 11);
}

#[test]
fn a_trap_costs_only_its_record_and_the_next_batch_gets_a_fresh_instance() {
    let fx = Fixture::new();
    let mut t = task(&fx, OnError::DeadLetter);
    let mut sink = Collect::default();
    run(
        &mut t,
        &source(0, &["one", "set s a 1", "trap", "two"]),
        &mut sink,
    )
    .unwrap();
    // A trap ends its batch: the rest comes with the task's next turn.
    assert_eq!(sink.values(), ["one"]);
    assert_eq!((t.position().offset, t.stats().traps), (3, 1));
    run(&mut t, &source(3, &["two"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["one", "two"]);
    assert_eq!(sink.dead.len(), 1);
    assert_eq!(get(&mut t, "s", "a").as_deref(), Some("1"));
    run(&mut t, &source(4, &["three", "incr c n 1"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["one", "two", "three", "1"]);
    assert_eq!(t.position().offset, 6);
}

#[test]
fn runaway_and_memory_hungry_records_are_isolated() {
    let fx = Fixture::new();
    let mut t = task(&fx, OnError::DeadLetter);
    let mut sink = Collect::default();
    run(
        &mut t,
        &source(0, &["before", "loop", "bomb", "after"]),
        &mut sink,
    )
    .unwrap();
    // A record that ran to its deadline ends its batch: the rest waits for the task's
    // next turn (which the runner delays, see `backoff_ms`).
    assert_eq!(sink.values(), ["before"]);
    assert_eq!(t.position().offset, 2);
    assert_eq!(t.stats().timeouts, 1);
    run(&mut t, &source(2, &["bomb", "after"]), &mut sink).unwrap();
    run(&mut t, &source(3, &["after"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["before", "after"]);
    assert_eq!(t.stats().traps, 1, "the deadline is not counted as a trap");
    let errors: Vec<String> = sink
        .dead
        .iter()
        .map(|d| {
            String::from_utf8_lossy(&d.headers.iter().find(|(k, _)| k == "eddy.error").unwrap().1)
                .into_owned()
        })
        .collect();
    assert!(errors[0].contains("deadline"), "{errors:?}");
    assert!(errors[1].contains("memory limit"), "{errors:?}");
}

#[test]
fn fatal_errors_fail_whatever_the_policy() {
    let fx = Fixture::new();
    let mut t = task(&fx, OnError::Skip);
    let err = run(
        &mut t,
        &source(0, &["fine", "fatal out of ideas"]),
        &mut Collect::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("out of ideas"), "{err}");
    assert_eq!(t.position().offset, 1);
}

#[test]
fn side_outputs_are_kept_apart() {
    let fx = Fixture::new();
    let mut t = task(&fx, OnError::Fail);
    let mut sink = Collect::default();
    run(&mut t, &source(0, &["emit late x", "main"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["main"]);
    assert_eq!(sink.side.len(), 1);
    assert_eq!(
        (sink.side[0].0.as_str(), sink.side[0].1.value.as_slice()),
        ("late", &b"x"[..])
    );
}

#[test]
fn timers_fire_once_the_watermark_passes_and_survive_restarts() {
    let fx = Fixture::new();
    let mut sink = Collect::default();
    {
        let mut t = task(&fx, OnError::Fail);
        // Offsets are the timestamps: the watermark after this batch is 1.
        run(&mut t, &source(0, &["timer a 5", "timer b 50"]), &mut sink).unwrap();
        assert!(sink.main.is_empty());
    }
    let mut t = task(&fx, OnError::Fail);
    assert_eq!(t.position().watermark, 1);
    run(&mut t, &source(6, &["x"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["x", "fired@5"]);
    t.finish_input(&mut sink).unwrap();
    assert_eq!(sink.values(), ["x", "fired@5", "fired@50"]);
    assert_eq!(sink.main[2].key.as_deref(), Some(&b"b"[..]));
}

#[test]
fn position_and_state_survive_a_restart() {
    let fx = Fixture::new();
    {
        let mut t = task(&fx, OnError::Fail);
        run(
            &mut t,
            &source(0, &["incr c n 1", "incr c n 1"]),
            &mut Collect::default(),
        )
        .unwrap();
    }
    let mut t = task(&fx, OnError::Fail);
    assert_eq!(t.position().offset, 2);
    let mut sink = Collect::default();
    run(&mut t, &source(2, &["incr c n 1"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["3"]);
}

#[test]
fn chained_operators_feed_each_other_and_failures_name_the_operator() {
    let fx = Fixture::new();
    let ops = vec![
        operator(&fx, "fixture-probe", "first"),
        operator(&fx, "fixture-probe", "second"),
    ];
    let mut t = Task::new(
        TaskId::new("p", 0),
        ops,
        config(OnError::DeadLetter),
        fx.db.clone(),
    )
    .unwrap();
    let mut sink = Collect::default();
    run(
        &mut t,
        &source(
            0,
            &[
                "forward hello",
                "forward bad boom",
                "forward incr c n 1",
                "forward incr c n 1",
            ],
        ),
        &mut sink,
    )
    .unwrap();
    assert_eq!(sink.values(), ["hello", "1", "2"]);
    assert_eq!(sink.dead.len(), 1);
    assert_eq!(
        sink.dead[0].value, b"forward bad boom",
        "the dead letter is the source record"
    );
    let op = sink.dead[0]
        .headers
        .iter()
        .find(|(k, _)| k == "eddy.operator")
        .unwrap();
    assert_eq!(op.1, b"second@1");

    let ops = vec![
        operator(&fx, "fixture-probe", "echo"),
        operator(&fx, "wordcount", "wordcount"),
    ];
    let mut t = Task::new(
        TaskId::new("q", 0),
        ops,
        config(OnError::Fail),
        fx.db.clone(),
    )
    .unwrap();
    let mut sink = Collect::default();
    run(&mut t, &source(0, &["alpha beta", "alpha"]), &mut sink).unwrap();
    let pairs: Vec<(String, String)> = sink
        .main
        .iter()
        .map(|r| {
            (
                String::from_utf8(r.key.clone().unwrap()).unwrap(),
                String::from_utf8(r.value.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            ("alpha".into(), "1".into()),
            ("beta".into(), "1".into()),
            ("alpha".into(), "2".into())
        ]
    );
}

#[test]
fn uncommitted_batches_are_redone_after_a_crash_with_the_same_result() {
    let fx = Fixture::new();
    let never = TaskConfig {
        commit_interval: std::time::Duration::from_secs(3600),
        ..config(OnError::Fail)
    };
    let mut sink = Collect::default();
    let mut t = Task::new(
        TaskId::new("p", 0),
        vec![operator(&fx, "fixture-probe", "probe")],
        never.clone(),
        fx.db.clone(),
    )
    .unwrap();
    t.process(&source(0, &["incr c n 1", "incr c n 1"]), &mut sink)
        .unwrap();
    assert!(sink.main.is_empty(), "outputs wait for the commit");
    assert_eq!((t.position().offset, t.committed_position().offset), (2, 0));
    t.flush(&mut sink).unwrap();
    assert_eq!(sink.values(), ["1", "2"]);
    t.process(&source(2, &["incr c n 1", "set s k v"]), &mut sink)
        .unwrap();
    drop(t); // a crash: the last batch was never committed

    let mut t = Task::new(
        TaskId::new("p", 0),
        vec![operator(&fx, "fixture-probe", "probe")],
        never,
        fx.db.clone(),
    )
    .unwrap();
    assert_eq!(t.position().offset, 2);
    assert_eq!(get(&mut t, "s", "k"), None);
    run(&mut t, &source(2, &["incr c n 1", "set s k v"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["1", "2", "3"]);
    assert_eq!(get(&mut t, "s", "k").as_deref(), Some("v"));
}

#[test]
fn a_failing_batch_keeps_earlier_uncommitted_batches() {
    let fx = Fixture::new();
    let never = TaskConfig {
        commit_interval: std::time::Duration::from_secs(3600),
        ..config(OnError::Skip)
    };
    let mut t = Task::new(
        TaskId::new("p", 0),
        vec![operator(&fx, "fixture-probe", "probe")],
        never,
        fx.db.clone(),
    )
    .unwrap();
    let mut sink = Collect::default();
    t.process(&source(0, &["set s a 1"]), &mut sink).unwrap();
    t.process(&source(1, &["setfail s b 2 trap"]), &mut sink)
        .unwrap();
    run(&mut t, &source(2, &["get s a", "get s b"]), &mut sink).unwrap();
    assert_eq!(sink.values(), ["1", "<none>"]);
    assert_eq!(t.committed_position().offset, 4);
}

/// A source batch of `values` at consecutive offsets from `first`, with `timestamps`.
fn timed(first: u64, values: &[&str], timestamps: &[i64]) -> SourceBatch {
    let records: Vec<Record> = values
        .iter()
        .zip(timestamps)
        .map(|(v, ts)| keyless(v, *ts))
        .collect();
    at_offsets(first, &records)
}

fn keyless(value: &str, timestamp: i64) -> Record {
    Record {
        key: None,
        value: value.as_bytes().to_vec(),
        timestamp,
        headers: vec![],
    }
}

/// `records` as a source batch at consecutive offsets from `first`.
fn at_offsets(first: u64, records: &[Record]) -> SourceBatch {
    SourceBatch {
        events: batch::from_records(records),
        offsets: (first..first + records.len() as u64).collect(),
        source: 0,
    }
}

fn late_task(fx: &Fixture, late: LateEvents) -> Task {
    let config = TaskConfig {
        watermark_delay: 2,
        late_events: late,
        ..TaskConfig::default()
    };
    Task::new(
        TaskId::new("p", 0),
        vec![operator(fx, "fixture-probe", "probe")],
        config,
        fx.db.clone(),
    )
    .unwrap()
}

#[test]
fn late_events_are_processed_dropped_or_set_aside_by_policy_whatever_the_batches() {
    // With 2 ms of out-of-orderness the watermark after `a` (10) is 8: `b` (5) is late,
    // `c` (9) is not; after `d` (12) it is 10: `e` (7) is late, and so is `f` (9), the
    // last event (the task must still move past it).
    let values = ["a", "b", "c", "d", "e", "f"];
    let times = [10, 5, 9, 12, 7, 9];
    for (policy, main, late) in [
        (LateEvents::Process, &values[..], &[][..]),
        (LateEvents::Drop, &["a", "c", "d"][..], &["b", "e", "f"][..]),
        (
            LateEvents::SideOutput,
            &["a", "c", "d"][..],
            &["b", "e", "f"][..],
        ),
    ] {
        // One batch, or batches of one and two: the same events are late.
        for split in [6, 1, 2] {
            let fx = Fixture::new();
            let mut t = late_task(&fx, policy);
            let mut sink = Collect::default();
            for start in (0..6).step_by(split) {
                let end = (start + split).min(6);
                let b = timed(start as u64, &values[start..end], &times[start..end]);
                run(&mut t, &b, &mut sink).unwrap();
            }
            let what = format!("{policy:?}, batches of {split}");
            assert_eq!(sink.values(), main, "{what}");
            assert_eq!(t.position().offset, 6, "{what}: past every event");
            assert_eq!(t.position().watermark, 10, "{what}");
            assert_eq!(t.stats().events_in, 6, "{what}");
            if policy == LateEvents::SideOutput {
                let side: Vec<_> = sink
                    .side
                    .iter()
                    .map(|(port, r)| {
                        (
                            port.as_str(),
                            String::from_utf8_lossy(&r.value).into_owned(),
                            r.timestamp,
                        )
                    })
                    .collect();
                let expected: Vec<_> = late
                    .iter()
                    .map(|v| {
                        let i = values.iter().position(|x| x == v).unwrap();
                        ("late", v.to_string(), times[i])
                    })
                    .collect();
                assert_eq!(side, expected, "{what}: late events keep their timestamps");
            } else {
                assert!(sink.side.is_empty(), "{what}");
            }
            assert_eq!(t.stats().late, late.len() as u64, "{what}");
        }
    }
}

/// A source that hands out its records once, then nothing.
struct Feed(Vec<SourceBatch>);

impl TaskSource for Feed {
    fn poll(&mut self, from: u64, _max: usize) -> Result<SourceBatch, IoError> {
        match self.0.first() {
            Some(b) if b.offsets[0] == from => Ok(self.0.remove(0)),
            _ => Ok(SourceBatch {
                events: batch::empty(),
                offsets: Vec::new(),
                source: 0,
            }),
        }
    }

    fn end_offset(&self) -> u64 {
        0
    }
}

/// A sink the test can read while a runner owns it.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Collect>>);

impl Sink for Shared {
    fn commit(
        &mut self,
        commit: Commit,
        outputs: Vec<Outputs>,
        changes: Vec<eddy_host::state::changelog::OperatorChanges>,
    ) -> Result<(), IoError> {
        self.0.lock().unwrap().commit(commit, outputs, changes)
    }
}

#[test]
fn an_idle_partition_follows_its_stage_watermark_after_the_idle_timeout() {
    let fx = Fixture::new();
    let clock = Arc::new(StageClock::default());
    let runner = |p: u32, feed: Vec<SourceBatch>, sink: &Shared, idle: Option<u64>| {
        let info = TaskInfo {
            pipeline: "p".into(),
            operator: "probe".into(),
            version: 1,
            partition: p,
            partition_count: 2,
        };
        let op = WasmOperator::start(
            fx.component("fixture-probe"),
            info,
            vec![],
            fx.state("probe", p),
            fx.runtime.default_limits(),
        )
        .map_err(|(e, _)| e)
        .unwrap();
        let config = TaskConfig {
            batch_size: 64,
            idle_timeout: idle.map(Duration::from_millis),
            commit_interval: Duration::ZERO,
            ..TaskConfig::default()
        };
        let id = TaskId::new("p", p);
        let task = Task::new(id.clone(), vec![Box::new(op)], config, fx.db.clone()).unwrap();
        let handle = Arc::new(TaskHandle::new(id, 0, Arc::new(Signal::default())));
        TaskRunner::new(
            task,
            Inputs::one(Box::new(Feed(feed))),
            Box::new(sink.clone()),
            handle,
        )
        .with_clock(Arc::clone(&clock))
    };
    // Partition 1 sets a timer at 5, then goes quiet; partition 0's input runs to 100.
    let (busy_out, quiet_out) = (Shared::default(), Shared::default());
    let mut quiet = runner(
        1,
        vec![timed(0, &["timer a 5"], &[1])],
        &quiet_out,
        Some(200),
    );
    let mut busy = runner(
        0,
        vec![timed(0, &["x", "y"], &[50, 100])],
        &busy_out,
        Some(200),
    );
    assert_eq!(quiet.step(), Step::Worked);
    assert_eq!(busy.step(), Step::Worked);
    // Before the idle timeout the quiet partition's watermark (1) holds its timer back.
    assert_eq!(quiet.step(), Step::Idle);
    assert!(quiet_out.0.lock().unwrap().main.is_empty());
    assert_eq!(quiet.handle().status().timers, 1);
    assert!(!quiet.handle().status().idle);
    std::thread::sleep(Duration::from_millis(250));
    // Both are past the timeout now, but partition 0 last reported itself active (it has
    // not looked since): the quiet partition follows it and its timer fires.
    assert_eq!(quiet.step(), Step::Idle);
    let status = quiet.handle().status();
    assert!(status.idle);
    assert_eq!(status.watermark, Some(100), "follows the active partition");
    assert_eq!(quiet_out.0.lock().unwrap().values(), ["fired@5"]);
    assert_eq!(status.timers, 0);
    // Once every partition is idle nothing moves: there is no time to follow.
    assert_eq!(busy.step(), Step::Idle);
    assert!(busy.handle().status().idle);
    assert_eq!(busy.handle().status().watermark, Some(100));
}

/// A task after a repartition over two upstream tasks, dropping late events.
fn downstream_task(fx: &Fixture) -> Task {
    let config = TaskConfig {
        watermark_delay: 1_000, // not used after a repartition: upstream decides
        late_events: LateEvents::Drop,
        upstream_partitions: Some(2),
        ..TaskConfig::default()
    };
    let id = TaskId {
        pipeline: "p".into(),
        stage: 1,
        partition: 0,
    };
    Task::new(
        id,
        vec![operator(fx, "fixture-probe", "probe")],
        config,
        fx.db.clone(),
    )
    .unwrap()
}

/// Events and watermark records (`wm <upstream> <watermark>`) at offsets from `first`.
fn stream(first: u64, items: &[(&str, i64)]) -> SourceBatch {
    let records: Vec<Record> = items
        .iter()
        .map(|(v, ts)| match v.strip_prefix("wm ") {
            Some(from) => watermark_record(from.parse().unwrap(), *ts),
            None => keyless(v, *ts),
        })
        .collect();
    at_offsets(first, &records)
}

#[test]
fn after_a_repartition_the_watermark_is_the_lowest_upstream_one_whatever_the_batches() {
    // Upstream 0 is far ahead (100); upstream 1 lags: its events at 30 and 65 would be
    // late against upstream 0's watermark, but only 30 is late against the lowest (40),
    // and 65 against 70. The timer at 50 fires when upstream 1 reaches 70, before `w`.
    let items = [
        ("wm 0", 100),
        ("timer a 50", 60),
        ("x", 120),
        ("wm 1", 40),
        ("y", 30),
        ("watermark", 45),
        ("wm 1", 70),
        ("z", 65),
        ("w", 80),
        ("wm 0", 60),
    ];
    for split in [10, 1, 2, 3, 4] {
        let fx = Fixture::new();
        let mut sink = Collect::default();
        let mut t = downstream_task(&fx);
        for start in (0..items.len()).step_by(split) {
            let end = (start + split).min(items.len());
            run(&mut t, &stream(start as u64, &items[start..end]), &mut sink).unwrap();
        }
        let what = format!("batches of {split}");
        assert_eq!(sink.values(), ["x", "40", "fired@50", "w"], "{what}");
        assert_eq!(t.position().offset, 10, "{what}: past every record");
        assert_eq!(t.position().watermark, 70, "{what}");
        assert_eq!(t.stats().late, 2, "{what}: y and z");
        assert_eq!(
            t.stats().events_in,
            6,
            "{what}: watermark records are not events"
        );
        // A restart keeps each upstream task's watermark: upstream 1 alone moving to 150
        // brings the stage to upstream 0's 100.
        drop(t);
        let mut t = downstream_task(&fx);
        assert_eq!(t.position().watermark, 70, "{what}");
        run(&mut t, &stream(10, &[("wm 1", 150)]), &mut sink).unwrap();
        assert_eq!(t.position().watermark, 100, "{what}: after a restart");
    }
}

#[test]
fn a_crash_before_the_commit_forgets_upstream_watermarks_with_the_position() {
    let fx = Fixture::new();
    let mut sink = Collect::default();
    let mut t = downstream_task(&fx);
    run(&mut t, &stream(0, &[("wm 0", 10), ("wm 1", 20)]), &mut sink).unwrap();
    // Processed, not committed: a crash, then the same records again.
    t.process(&stream(2, &[("wm 0", 50), ("wm 1", 60)]), &mut sink)
        .unwrap();
    assert_eq!(t.position().watermark, 50);
    t.discard_uncommitted();
    assert_eq!(t.position().watermark, 10);
    drop(t);
    let mut t = downstream_task(&fx);
    assert_eq!(t.position().offset, 2);
    run(&mut t, &stream(2, &[("wm 1", 60)]), &mut sink).unwrap();
    assert_eq!(t.position().watermark, 10, "upstream 0 is still at 10");
}
