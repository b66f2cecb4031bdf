//! The Wasm runtime against real components: validation, every import, limits, traps.

use crate::support::guest;
use eddy_host::record::Record;
use eddy_host::record::batch::{self, EventBatch};
use eddy_host::runtime::bindings::GuestError;
use eddy_host::runtime::{
    CallError, ComponentError, OperatorComponent, OperatorInstance, Runtime, RuntimeConfig,
    TaskInfo, TrapKind,
};
use eddy_host::state::{Db, DbOptions, OperatorState, StateScope};
use eddy_host::task::batch::split_output;
use std::sync::Arc;
use std::time::Duration;

pub struct Fixture {
    pub runtime: Runtime,
    pub db: Arc<Db>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_config(RuntimeConfig {
            call_deadline: Duration::from_millis(300),
            memory_limit: 64 << 20,
            ..RuntimeConfig::default()
        })
    }

    pub fn with_config(config: RuntimeConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(Db::open(&dir.path().join("db"), &DbOptions::default()).unwrap());
        Fixture {
            runtime: Runtime::new(config).unwrap(),
            db,
            _dir: dir,
        }
    }

    pub fn component(&self, name: &str) -> OperatorComponent {
        self.runtime.load_file(&guest(name)).unwrap()
    }

    pub fn state(&self, operator: &str, partition: u32) -> OperatorState {
        OperatorState::new(
            Arc::clone(&self.db),
            StateScope {
                pipeline: "p".into(),
                operator: operator.into(),
                partition,
            },
            1 << 20,
        )
        .unwrap()
    }

    pub fn instance(&self, name: &str, config: &[(&str, &str)]) -> OperatorInstance {
        let info = TaskInfo {
            pipeline: "p".into(),
            operator: "probe".into(),
            version: 3,
            partition: 1,
            partition_count: 4,
        };
        let mut inst = self
            .component(name)
            .instantiate(info, self.state("probe", 1), self.runtime.default_limits())
            .map_err(|(e, _)| e)
            .unwrap();
        let config: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        inst.init(&config).unwrap();
        inst
    }
}

pub fn values(commands: &[&str]) -> EventBatch {
    let records: Vec<Record> = commands
        .iter()
        .enumerate()
        .map(|(i, c)| Record {
            key: None,
            value: c.as_bytes().to_vec(),
            timestamp: i as i64,
            headers: vec![],
        })
        .collect();
    batch::from_records(&records)
}

/// Runs commands through the probe and returns the values it emitted.
fn probe(inst: &mut OperatorInstance, commands: &[&str]) -> Vec<String> {
    let out = inst.process(&values(commands)).unwrap();
    let (main, side) = split_output(out);
    assert!(side.is_empty());
    batch::records(&main)
        .map(|r| String::from_utf8(r.value).unwrap())
        .collect()
}

#[test]
fn loads_an_operator_and_names_its_interfaces() {
    let fx = Fixture::new();
    let c = fx.component("wordcount");
    assert_eq!(c.digest().len(), 64);
    assert!(
        c.exports()
            .iter()
            .any(|e| e == "eddy:operator/handler@0.1.2")
    );
    assert!(
        c.imports().iter().any(|i| i == "eddy:operator/state@0.1.2"),
        "{:?}",
        c.imports()
    );
}

#[test]
fn refuses_what_is_not_an_operator_with_a_reason() {
    let fx = Fixture::new();
    let err = |bytes: &[u8]| fx.runtime.load(bytes).err().expect("refused").to_string();
    assert!(err(b"hello").contains("not a WebAssembly binary"));
    // The smallest core module: magic + version 1.
    let core = err(b"\0asm\x01\0\0\0");
    assert!(
        core.contains("core WebAssembly module") && core.contains("wasm32-wasip2"),
        "{core}"
    );

    let other = fx
        .runtime
        .load_file(&guest("fixture-other-world"))
        .err()
        .unwrap();
    assert!(
        matches!(other, ComponentError::WrongWorld { .. }),
        "{other}"
    );
    assert!(
        other
            .to_string()
            .contains("does not export `eddy:operator/handler@0.1.x`"),
        "{other}"
    );

    let sneaky = fx
        .runtime
        .load_file(&guest("fixture-forbidden-import"))
        .err()
        .unwrap();
    assert!(
        matches!(&sneaky, ComponentError::ForbiddenImport { import } if import.starts_with("eddy:forbidden/raw-network")),
        "{sneaky}"
    );

    let mut truncated = std::fs::read(guest("wordcount")).unwrap();
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        fx.runtime.load(&truncated),
        Err(ComponentError::Invalid(_))
    ));

    let missing = fx
        .runtime
        .load_file(std::path::Path::new("/nonexistent.wasm"))
        .err()
        .unwrap();
    assert!(
        missing.to_string().contains("/nonexistent.wasm"),
        "{missing}"
    );
}

#[test]
fn compiled_components_are_cached_by_digest() {
    let cache = tempfile::tempdir().unwrap();
    let fx = Fixture::with_config(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    });
    let first = fx.component("wordcount");
    let entries: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(entries.len(), 1);
    assert!(entries[0].starts_with(first.digest()), "{entries:?}");
    // A second runtime loads the cached form and it runs.
    let fx2 = Fixture::with_config(RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    });
    let again = fx2.component("wordcount");
    assert_eq!(again.digest(), first.digest());
    let info = TaskInfo {
        pipeline: "p".into(),
        operator: "wc".into(),
        version: 1,
        partition: 0,
        partition_count: 1,
    };
    let mut inst = again
        .instantiate(info, fx2.state("wc", 0), fx2.runtime.default_limits())
        .map_err(|(e, _)| e)
        .unwrap();
    inst.init(&[]).unwrap();
    let out = inst.process(&values(&["a a"])).unwrap();
    assert_eq!(out.outputs.len(), 2);
}

#[test]
fn state_imports_read_their_own_writes() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    let got = probe(
        &mut p,
        &[
            "set s a 1",
            "get s a",
            "get s zz",
            "setmany s b=2,c=3,d=4",
            "getmany s a,x,c",
            "scan s a -",
            "delrange s b d",
            "scan s a -",
            "del s a",
            "scan s - -",
            "incr c k 5",
            "incr c k -2",
            "incrmany c k,j 1,10",
        ],
    );
    assert_eq!(
        got,
        [
            "1",
            "<none>",
            "1,<none>,3",
            "a=1,b=2,c=3,d=4",
            "a=1,d=4",
            "d=4",
            "5",
            "3",
            "4,10"
        ]
    );
}

#[test]
fn increment_of_a_non_counter_is_bad_input() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    let err = p
        .process(&values(&["set s x abc", "incr s x 1"]))
        .unwrap_err();
    match err {
        CallError::Rejected {
            index: 1,
            error: GuestError::BadInput(m),
        } => assert!(m.contains("not an 8-byte"), "{m}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn context_timers_and_logging_reach_the_guest() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    p.state().watermark = 1234;
    let got = probe(
        &mut p,
        &[
            "info",
            "watermark",
            "log hello from the guest",
            "print to stdout",
        ],
    );
    assert_eq!(got, vec!["p/probe@3 1/4", "1234"]);
    probe(
        &mut p,
        &["timer t1 50", "timer t2 10", "timer t3 99", "untimer t3 99"],
    );
    let due = p.state().due_timers(60, 10).unwrap();
    assert_eq!(due, vec![(10, b"t2".to_vec()), (50, b"t1".to_vec())]);
    let fired = p.on_timer(b"t2", 10).unwrap();
    let r = batch::records(&split_output(fired).0).next().unwrap();
    assert_eq!(
        (r.key.unwrap(), r.value, r.timestamp),
        (b"t2".to_vec(), b"fired@10".to_vec(), 10)
    );
}

#[test]
fn wasi_grants_no_files_sockets_or_environment() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    let got = probe(
        &mut p,
        &[
            "open /etc/passwd",
            "open Cargo.toml",
            "connect 127.0.0.1:22",
            "env",
        ],
    );
    assert!(got[0].starts_with("error:"), "{got:?}");
    assert!(got[1].starts_with("error:"), "{got:?}");
    assert!(got[2].starts_with("error:"), "{got:?}");
    assert_eq!(got[3], "0");
}

#[test]
fn a_trap_is_reported_with_the_guest_message() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    match p.process(&values(&["echo", "trap"])).unwrap_err() {
        CallError::Trap {
            kind: TrapKind::Other,
            message,
        } => assert!(message.contains("trap requested"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn an_endless_loop_hits_the_deadline() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    let started = std::time::Instant::now();
    match p.process(&values(&["loop"])).unwrap_err() {
        CallError::Trap {
            kind: TrapKind::Deadline,
            message,
        } => assert!(message.contains("deadline"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline did not stop the loop"
    );
}

#[test]
fn a_memory_bomb_hits_the_limit() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    match p.process(&values(&["bomb"])).unwrap_err() {
        CallError::Trap {
            kind: TrapKind::MemoryLimit,
            message,
        } => assert!(message.contains("memory limit"), "{message}"),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn init_errors_carry_the_operator_message() {
    let fx = Fixture::new();
    let info = TaskInfo {
        pipeline: "p".into(),
        operator: "probe".into(),
        version: 1,
        partition: 0,
        partition_count: 1,
    };
    let mut inst = fx
        .component("fixture-probe")
        .instantiate(info, fx.state("probe", 0), fx.runtime.default_limits())
        .map_err(|(e, _)| e)
        .unwrap();
    let err = inst
        .init(&[("fail_init".into(), "missing setting `dictionary`".into())])
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Failed(GuestError::Fatal(m)) if m == "missing setting `dictionary`"),
        "{err:?}"
    );
}

#[test]
fn batch_errors_name_the_failing_index() {
    let fx = Fixture::new();
    let mut p = fx.instance("fixture-probe", &[]);
    match p
        .process(&values(&["a", "b", "bad wrong shape", "c"]))
        .unwrap_err()
    {
        CallError::Rejected {
            index,
            error: GuestError::BadInput(m),
        } => assert_eq!((index, m.as_str()), (2, "wrong shape")),
        other => panic!("unexpected {other:?}"),
    }
    match p.process(&values(&["fatal disk on fire"])).unwrap_err() {
        e @ CallError::Rejected {
            index: 0,
            error: GuestError::Fatal(_),
        } => assert!(e.is_fatal()),
        other => panic!("unexpected {other:?}"),
    }
}
