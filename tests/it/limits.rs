//! One operator's limits (`max_*` settings): a call that writes too large a value, too
//! much state, too much output or too many timers stops with a message naming the limit
//! and the setting that raises it; a store beyond `max_stores` is refused; and a task
//! retries a batch that wrote too much record by record.

use crate::runtime::{Fixture, values};
use eddy_host::io::{AfterCommit, Outputs, SourceBatch};
use eddy_host::model::{OnError, Settings};
use eddy_host::record::batch;
use eddy_host::runtime::{CallError, Limits, OperatorInstance, TaskInfo, TrapKind};
use eddy_host::state::TaskId;
use eddy_host::task::{OperatorTemplate, Task, TaskConfig};

/// Small limits, so the tests stay small.
fn settings() -> Settings {
    Settings {
        max_value_mb: 1,
        max_batch_state_mb: 4,
        max_output_mb: 1,
        max_timers_per_call: 10,
        max_pending_timers: 15,
        max_stores: 5,
        memory_limit_mb: 64,
        ..Settings::default()
    }
}

fn probe(fx: &Fixture, limits: Limits) -> OperatorInstance {
    let info = TaskInfo {
        pipeline: "p".into(),
        operator: "probe".into(),
        version: 1,
        partition: 0,
        partition_count: 1,
    };
    let mut inst = fx
        .component("fixture-probe")
        .instantiate(info, fx.state("probe", 0), limits)
        .map_err(|(e, _)| e)
        .unwrap();
    inst.init(&[]).unwrap();
    inst
}

/// Runs one command on a fresh instance and returns the limit's message.
fn stopped_by_limit(fx: &Fixture, limits: Limits, command: &str) -> String {
    match probe(fx, limits).process(&values(&[command])) {
        Err(CallError::Trap {
            kind: TrapKind::Limit,
            message,
        }) => message,
        other => panic!("{command}: expected a limit, got {other:?}"),
    }
}

#[test]
fn each_limit_stops_the_call_and_names_its_setting() {
    let fx = Fixture::new();
    let limits = Limits::from_settings(&settings());
    for (command, says) in [
        ("big s 1 2", "2.0 MiB is over settings.max_value_mb = 1"),
        ("big s 5 1", "over settings.max_batch_state_mb = 4"),
        ("emitbig 2", "over settings.max_output_mb = 1"),
        ("timers 11", "settings.max_timers_per_call = 10"),
    ] {
        let message = stopped_by_limit(&fx, limits, command);
        assert!(message.contains(says), "{command}: {message}");
    }
    // Up to the limits, the same calls work.
    let mut p = probe(&fx, limits);
    for command in ["big s 1 1", "big s 3 1", "timers 10"] {
        p.process(&values(&[command]))
            .unwrap_or_else(|e| panic!("{command}: {e}"));
    }
}

#[test]
fn timers_waiting_in_a_task_are_bounded_counting_each_timer_once() {
    let fx = Fixture::new();
    let mut p = probe(&fx, Limits::from_settings(&settings()));
    // Each command is a batch that ends, every other one committed, so the count sees
    // timers in the batch, in ended batches and committed ones.
    let run = |p: &mut OperatorInstance, i: usize, command: &str| {
        let result = p.process(&values(&[command]));
        if result.is_ok() {
            p.state().end_batch();
            if i % 2 == 1 {
                let mut commit =
                    eddy_host::state::Commit::new(std::sync::Arc::clone(p.state().db()));
                p.state().stage(&mut commit, None);
                commit.write().unwrap();
                p.state().committed();
            }
        }
        result
    };
    // Ten timers, the same ten again (set again, not added), two more, one deleted,
    // a delete of one that does not exist, and four more: 15, the limit.
    let commands = [
        "timers 10",
        "timers 10",
        "timer a 50",
        "timer b 50",
        "untimer a 50",
        "untimer zz 1",
        "timer c 50",
        "timer d 50",
        "timer e 50",
        "timer f 50",
        "timer b 50",
    ];
    for (i, command) in commands.iter().enumerate() {
        run(&mut p, i, command).unwrap_or_else(|e| panic!("{command}: {e}"));
    }
    match run(&mut p, 0, "timer g 50") {
        Err(CallError::Trap {
            kind: TrapKind::Limit,
            message,
        }) => assert!(
            message.contains(
                "16 timers waiting in this task, more than settings.max_pending_timers = 15"
            ),
            "{message}"
        ),
        other => panic!("expected the limit, got {other:?}"),
    }
}

#[test]
fn stores_beyond_the_limit_are_refused_to_the_operator() {
    let fx = Fixture::new();
    let mut p = probe(&fx, Limits::from_settings(&settings()));
    let out = p.process(&values(&["stores 7"])).unwrap();
    let reply = batch::records(&eddy_host::task::batch::split_output(out).0)
        .map(|r| String::from_utf8(r.value).unwrap())
        .next()
        .unwrap();
    assert!(reply.starts_with("5 "), "{reply}");
    assert!(reply.contains("settings.max_stores = 5"), "{reply}");
}

#[test]
fn a_copy_over_what_one_host_call_may_take_is_named() {
    let fx = Fixture::new();
    let limits = Limits::from_settings(&Settings {
        max_value_mb: 100,
        max_batch_state_mb: 1024,
        memory_limit_mb: 512,
        ..Settings::default()
    });
    let message = match probe(&fx, limits).process(&values(&["big s 1 130"])) {
        Err(CallError::Trap { message, .. }) => message,
        other => panic!("expected a trap, got {other:?}"),
    };
    assert!(message.contains("more than 128 MiB"), "{message}");
    assert!(message.contains("max_value_mb"), "{message}");
}

#[test]
fn a_batch_that_writes_too_much_is_retried_record_by_record() {
    let fx = Fixture::new();
    let settings = Settings {
        max_batch_state_mb: 2,
        on_error: OnError::Skip,
        ..settings()
    };
    let template = OperatorTemplate::new(
        fx.component("fixture-probe"),
        "p",
        "probe",
        1,
        vec![],
        Limits::from_settings(&settings),
        1 << 20,
    );
    let op = template.start(&fx.db, 0, 1).unwrap();
    let mut task = Task::new(
        TaskId::new("p", 0),
        vec![Box::new(op)],
        TaskConfig::from_settings(&settings),
        fx.db.clone(),
    )
    .unwrap();
    let mut sink = AfterCommit(|_: Vec<Outputs>| Ok(()));
    // Three records of 1 MiB each: 3 MiB in one call is over the limit, 1 MiB each is not.
    let records: Vec<_> = (0..3)
        .map(|i| eddy_host::record::Record {
            value: b"big s 1 1".to_vec(),
            timestamp: i,
            ..Default::default()
        })
        .collect();
    let source = SourceBatch {
        events: batch::from_records(&records),
        offsets: vec![0, 1, 2],
        source: 0,
    };
    task.process(&source, &mut sink).unwrap();
    task.flush(&mut sink).unwrap();
    assert_eq!(task.stats().errors, 0, "{:?}", task.stats().last_error);
    assert_eq!(task.stats().events_in, 3);
    // A record that alone writes 3 MiB fails by the policy (skipped), and says why.
    let alone = SourceBatch {
        events: batch::from_records(&[eddy_host::record::Record {
            value: b"big s 3 1".to_vec(),
            ..Default::default()
        }]),
        offsets: vec![3],
        source: 0,
    };
    task.process(&alone, &mut sink).unwrap();
    task.flush(&mut sink).unwrap();
    assert_eq!(task.stats().errors, 1);
    let why = task.stats().last_error.clone().unwrap();
    assert!(why.contains("settings.max_batch_state_mb = 2"), "{why}");
    assert_eq!(task.position().offset, 4);
}
