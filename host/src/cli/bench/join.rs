//! `eddy bench join`: orders ⋈ customers (a stream–table join, `examples/enrich-orders`)
//! through the server path: the customers and a backlog of orders in embedded topics,
//! one task per partition reading both, outputs committed to the sink topic with state
//! and offsets. The Wasm operator and the same join compiled natively, in one run.

use super::common::{
    BenchPath, Best, fresh_log, pipeline_record, print_best, push_output, run_to_end,
    start_pipeline,
};
use crate::metrics::Metrics;
use crate::model::{PipelineRecord, PipelineSpec};
use crate::record::Record;
use crate::record::batch::{EventBatch, OutputBatch, Span};
use crate::registry::Registry;
use crate::runtime::bindings::GuestError;
use crate::runtime::{CallError, Runtime, RuntimeConfig};
use crate::state::OperatorState;
use crate::task::TaskFactory;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(clap::Args)]
pub struct JoinArgs {
    /// The enrich-orders component (examples/enrich-orders built for wasm32-wasip2).
    #[arg(long)]
    wasm: PathBuf,
    /// Orders to join per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    orders: usize,
    /// Customers in the table (a tenth of the orders' keys have none: dropped).
    #[arg(long, default_value_t = 100_000)]
    customers: usize,
    /// Partitions of both topics (one task each).
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Worker threads (default: twice the number of cores, as `eddy serve`).
    #[arg(long)]
    workers: Option<usize>,
    #[arg(long, default_value_t = 512)]
    batch_size: usize,
    /// Rounds per path; each reports its best (the machine may be shared).
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Where the benchmark databases go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The workload: customer rows and orders, keyed by customer id, seeded.
struct Workload {
    customers: Vec<Record>,
    orders: Vec<Record>,
    /// Orders whose customer exists (what an inner join emits).
    joined: u64,
}

fn workload(args: &JoinArgs) -> Workload {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let keyed = |key: String, value: String, ts: i64| Record {
        key: Some(key.into_bytes()),
        value: value.into_bytes(),
        timestamp: ts,
        ..Record::default()
    };
    let customers = (0..args.customers)
        .map(|c| {
            keyed(
                format!("c{c}"),
                format!("{{\"name\":\"customer {c}\",\"tier\":\"gold\"}}"),
                0,
            )
        })
        .collect();
    let unknown = args.customers / 9 + 1;
    let mut joined = 0;
    let orders = (0..args.orders)
        .map(|i| {
            let c = rng.random_range(0..args.customers + unknown);
            joined += u64::from(c < args.customers);
            keyed(
                format!("c{c}"),
                format!("{{\"id\":{i},\"amount\":{}}}", rng.random_range(1..500)),
                1 + i as i64,
            )
        })
        .collect();
    Workload {
        customers,
        orders,
        joined,
    }
}

fn produce(log: &crate::log::Log, topic: &str, records: &[Record]) -> anyhow::Result<()> {
    let topic = log.topic(topic)?;
    for chunk in records.chunks(10_000) {
        let batch: Vec<(Record, Option<u32>)> = chunk.iter().map(|r| (r.clone(), None)).collect();
        log.produce(&topic, &batch)?;
    }
    Ok(())
}

/// One run over a fresh data dir: seconds until every order (and the table) committed.
fn measure(
    path: BenchPath,
    args: &JoinArgs,
    runtime: &Runtime,
    work: &Workload,
    dir: &Path,
) -> anyhow::Result<f64> {
    let (db, log) = fresh_log(dir, args.partitions, &["orders", "customers", "enriched"])?;
    produce(&log, "customers", &work.customers)?;
    produce(&log, "orders", &work.orders)?;
    // The backlog was written before the run: do not bill its flush to the run.
    db.flush()?;
    let registry = Arc::new(Registry::open(
        Arc::clone(&db),
        dir.join("operators"),
        runtime.clone(),
    )?);
    let mut record = bench_pipeline(args)?;
    let factory = TaskFactory::new(
        Arc::clone(&db),
        Arc::clone(&log),
        Arc::clone(&registry),
        Arc::new(Metrics::new()),
        workers(args),
    );
    let (started, handles) = start_pipeline(path, &factory, &mut record, &args.wasm, &native_join)?;
    let total = (work.customers.len() + work.orders.len()) as u64;
    let secs = run_to_end(started, &handles, &|hs| {
        hs.iter().map(|h| h.status().committed_offset).sum::<u64>() == total
    })?;
    let sink = log.topic("enriched")?;
    let written: u64 = (0..args.partitions).map(|p| sink.end_offset(p)).sum();
    anyhow::ensure!(
        written == work.joined,
        "{written} outputs for {} orders with a customer",
        work.joined
    );
    Ok(secs)
}

/// The enrich-orders join written natively against the same flat batches and state
/// API: a customer record sets (or, empty, deletes) the row; an order with a row is
/// emitted with it.
fn native_join() -> Box<crate::task::NativeProcess> {
    Box::new(|input: &EventBatch, state: &mut OperatorState| {
        let table = state.open_store("customers")?.expect("a valid store name");
        let customers = state.input.as_deref() == Some("customers");
        let mut out = OutputBatch::default();
        for (i, e) in input.events.iter().enumerate() {
            let key = &input.data[e.key.offset as usize..][..e.key.len as usize];
            let value = &input.data[e.value.offset as usize..][..e.value.len as usize];
            if e.key.len == Span::NONE.len {
                return Err(CallError::Rejected {
                    index: i as u32,
                    error: GuestError::BadInput("a record without a key".into()),
                });
            }
            if customers {
                state.put(table, key, (!value.is_empty()).then_some(value));
                continue;
            }
            let Some(row) = state.get(table, key)? else {
                continue;
            };
            let mut v = Vec::with_capacity(value.len() + row.len() + 24);
            v.extend_from_slice(b"{\"order\":");
            v.extend_from_slice(value);
            v.extend_from_slice(b",\"customer\":");
            v.extend_from_slice(&row);
            v.push(b'}');
            push_output(&mut out, key, &v, e.timestamp);
        }
        Ok(out)
    })
}

pub fn run(args: JoinArgs) -> anyhow::Result<()> {
    let (dir, _temp) = match &args.dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let work = workload(&args);
    let runtime = Runtime::new(RuntimeConfig::default())?;
    let mut best = Best::default();
    for round in 1..=args.rounds {
        for path in [BenchPath::Wasm, BenchPath::Native] {
            let secs = measure(path, &args, &runtime, &work, &dir.join(format!("{path:?}")))?;
            eprintln!(
                "round {round}: {path:?}: {:.0} orders/s",
                args.orders as f64 / secs
            );
            best.record(path, secs);
        }
    }
    println!(
        "orders ⋈ customers through the server path: {} orders, {} customers (table, read first), {} joined, {} partitions, {} workers, best of {} rounds",
        args.orders,
        args.customers,
        work.joined,
        args.partitions,
        workers(&args),
        args.rounds
    );
    print_best(
        &best,
        args.orders,
        "order",
        "wasm operator, two embedded topics → sink",
    );
    Ok(())
}

/// The benchmark's pipeline: orders (a stream) and customers (a table) into `enriched`.
fn bench_pipeline(args: &JoinArgs) -> anyhow::Result<PipelineRecord> {
    let spec = PipelineSpec::from_toml(&format!(
        "name = \"bench\"\nsink = {{ topic = \"enriched\" }}\n\
         [[inputs]]\nname = \"orders\"\ntopic = \"orders\"\n\
         [[inputs]]\nname = \"customers\"\ntopic = \"customers\"\nkind = \"table\"\n\
         [[operators]]\nname = \"enrich-orders\"\n\
         [settings]\nbatch_size = {}\nstate_cache_mb = 64\n",
        args.batch_size
    ))?;
    Ok(pipeline_record(spec, "enrich-orders", 0, String::new()))
}

fn workers(args: &JoinArgs) -> usize {
    args.workers.unwrap_or_else(crate::server::default_workers)
}
