//! `eddy bench state`: savepoint, restore, changelog rebuild, upgrade pause and a
//! shadow run's cost of a word-count pipeline holding many keys, through the server's
//! own code paths.

use crate::control::{PipelineSpec, VersionRef};
use crate::log::TopicConfig;
use crate::record::Record;
use crate::server::{App, ServerConfig};
use anyhow::Context as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args)]
pub struct StateArgs {
    /// examples/wordcount built for wasm32-wasip2.
    #[arg(long)]
    wasm: PathBuf,
    /// examples/wordcount-v2 built for wasm32-wasip2 (the upgrade target).
    #[arg(long)]
    wasm_v2: PathBuf,
    /// Distinct keys in the state.
    #[arg(long, default_value_t = 1_000_000)]
    keys: usize,
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Upgrades to time (alternating between the two versions).
    #[arg(long, default_value_t = 5)]
    upgrades: usize,
    /// Where the server data goes (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn wait_caught_up(app: &App, name: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let s = app.controller.status(name)?;
        if s.tasks.iter().all(|t| t.lag == 0) {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "the pipeline did not catch up");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn run(args: StateArgs) -> anyhow::Result<()> {
    let _temp;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => {
            _temp = tempfile::tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    let config = ServerConfig {
        data_dir: dir,
        workers: 2,
        kafka_brokers: None,
        cluster: None,
        server_name: None,
        ..ServerConfig::default()
    };
    let app = App::open(&config)?;
    let c = std::sync::Arc::clone(&app.controller);
    let registry = c.registry();
    registry.put(
        "wordcount",
        &std::fs::read(&args.wasm).with_context(|| args.wasm.display().to_string())?,
    )?;
    registry.put(
        "wordcount",
        &std::fs::read(&args.wasm_v2).with_context(|| args.wasm_v2.display().to_string())?,
    )?;
    let topic = c
        .log()
        .create_topic("lines", &TopicConfig::kept(args.partitions))?;
    let spec = PipelineSpec::from_toml(
        "name = \"wc\"\n[source]\ntopic = \"lines\"\n[sink]\ntopic = \"counts\"\n[[operators]]\nname = \"wordcount\"\nversion = 1\n[settings]\nprobation_records = 1000\nprobation_ms = 200\n",
    )?;
    c.create(spec)?;

    eprintln!("loading {} keys...", args.keys);
    let loading = Instant::now();
    for chunk in (0..args.keys).collect::<Vec<_>>().chunks(20_000) {
        let records: Vec<(Record, Option<u32>)> = chunk
            .iter()
            .map(|i| {
                let w = format!("key-{i:08}");
                (
                    Record {
                        key: Some(w.clone().into_bytes()),
                        value: w.into_bytes(),
                        ..Record::default()
                    },
                    None,
                )
            })
            .collect();
        c.log().produce(&topic, &records)?;
    }
    wait_caught_up(&app, "wc")?;
    eprintln!("loaded in {:.1} s", loading.elapsed().as_secs_f64());

    let t = Instant::now();
    let savepoint = c.savepoint("wc")?;
    let savepoint_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        savepoint.keys as usize == args.keys,
        "the savepoint holds {} keys",
        savepoint.keys
    );

    // An upgrade, fed 1,000 records of the keys there are on `feed`'s partitions (a
    // probation needs records), to its verdict.
    let upgrade = |version: u32, partitions: Option<Vec<u32>>, feed: &[u32], promote: bool| {
        let to = crate::control::UpgradeTo {
            operator: "wordcount".into(),
            version: Some(VersionRef::Number(version)),
            config: None,
            partitions,
        };
        let started = if promote {
            c.end_upgrade("wc", crate::control::UpgradeDecision::Promote)?
        } else {
            c.upgrade("wc", &to, false)?
        };
        let step = (args.keys / 1000).max(1);
        let records: Vec<(Record, Option<u32>)> = (0..1000)
            .map(|i| {
                let w = format!("key-{:08}", i * step % args.keys.max(1));
                let r = Record {
                    key: Some(w.clone().into_bytes()),
                    value: w.into_bytes(),
                    ..Record::default()
                };
                (r, Some(feed[i % feed.len()]))
            })
            .collect();
        c.log().produce(&topic, &records)?;
        verdict(&c, "wc", started.started_ms)
    };
    let all: Vec<u32> = (0..args.partitions).collect();
    let mut pauses = Vec::new();
    for i in 0..args.upgrades {
        let version = if i % 2 == 0 { 2 } else { 1 };
        let u = upgrade(version, None, &all, false)?;
        anyhow::ensure!(
            u.result == crate::control::UpgradeResult::Succeeded,
            "upgrade {i}: {:?} {:?}",
            u.result,
            u.reason
        );
        eprintln!("upgrade to version {version}: paused {:.1} ms", u.pause_ms);
        pauses.push(u.pause_ms);
    }
    pauses.sort_by(f64::total_cmp);
    let median_pause = pauses[pauses.len() / 2];
    // A canary on partition 0, then its promotion to the others.
    let other = if args.upgrades.is_multiple_of(2) {
        2
    } else {
        1
    };
    let canary = upgrade(other, Some(vec![0]), &[0], false)?;
    anyhow::ensure!(
        canary.result == crate::control::UpgradeResult::Canary,
        "canary: {:?} {:?}",
        canary.result,
        canary.reason
    );
    let promoted = upgrade(other, None, &all[1..], true)?;
    anyhow::ensure!(
        promoted.result == crate::control::UpgradeResult::Succeeded,
        "promotion: {:?} {:?}",
        promoted.result,
        promoted.reason
    );

    // A shadow's cost: the same records through the stopped pipeline, started and
    // timed to its catch-up, without and then with a shadow doing the same work (the
    // running version with its default config written out).
    let phase = |seed: usize| -> anyhow::Result<f64> {
        c.stop("wc")?;
        let n = args.keys.max(1);
        for chunk in (0..n).collect::<Vec<_>>().chunks(20_000) {
            let records: Vec<(Record, Option<u32>)> = chunk
                .iter()
                .map(|i| {
                    let w = format!("key-{:08}", (i * 7919 + seed) % n);
                    let r = Record {
                        key: Some(w.clone().into_bytes()),
                        value: w.into_bytes(),
                        ..Record::default()
                    };
                    (r, None)
                })
                .collect();
            c.log().produce(&topic, &records)?;
        }
        let t = Instant::now();
        c.start("wc")?;
        wait_caught_up(&app, "wc")?;
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    let alone = phase(1)?;
    let version = c.status("wc")?.operators[0].version;
    let t = Instant::now();
    let to = crate::control::UpgradeTo {
        operator: "wordcount".into(),
        version: Some(VersionRef::Number(version)),
        config: Some([("lowercase".to_string(), "false".to_string())].into()),
        partitions: None,
    };
    c.start_shadow("wc", &to, crate::model::ShadowLimits::default())?;
    let shadow_start_secs = t.elapsed().as_secs_f64();
    let shadowed = phase(2)?;
    let report = c.shadow_report("wc")?;
    anyhow::ensure!(
        report.counts.compared == args.keys.max(1) as u64
            && report.counts.same == report.counts.compared,
        "the shadow compared {:?}",
        report.counts
    );
    c.discard_shadow("wc")?;

    c.stop("wc")?;
    let t = Instant::now();
    let restored = c.restore("wc", &savepoint.id)?;
    let restore_secs = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        restored.keys as usize == args.keys,
        "restored {} keys",
        restored.keys
    );

    let t = Instant::now();
    let rebuilt = c.rebuild_state("wc")?;
    let rebuild_secs = t.elapsed().as_secs_f64();

    println!(
        "word-count state of {} keys over {} partitions",
        args.keys, args.partitions
    );
    println!(
        "{:<40} {:>12}",
        "savepoint (pause, snapshot, files)",
        format!("{:.2} s", savepoint_secs)
    );
    println!(
        "{:<40} {:>12}",
        "restore (check, files, changelogs)",
        format!("{:.2} s", restore_secs)
    );
    println!(
        "{:<40} {:>12}",
        "changelog rebuild",
        format!("{:.0} keys/s", rebuilt.records as f64 / rebuild_secs)
    );
    println!(
        "{:<40} {:>12}",
        format!("upgrade pause, median of {}", pauses.len()),
        format!("{median_pause:.1} ms")
    );
    println!(
        "{:<40} {:>12}",
        "canary upgrade pause (partition 0)",
        format!("{:.1} ms", canary.pause_ms)
    );
    println!(
        "{:<40} {:>12}",
        "canary promotion pause (the others)",
        format!("{:.1} ms", promoted.pause_ms)
    );
    println!(
        "{:<40} {:>12}",
        "shadow start (copy of the state)",
        format!("{:.2} s", shadow_start_secs)
    );
    println!(
        "{:<40} {:>12}",
        "events/s without a shadow",
        format!("{alone:.0}")
    );
    println!(
        "{:<40} {:>12}",
        "events/s with a shadow (same work)",
        format!("{shadowed:.0}")
    );
    println!(
        "{:<40} {:>12}",
        "ratio with/without",
        format!("{:.2}", shadowed / alone)
    );
    println!(
        "upgrade pauses: {}",
        pauses
            .iter()
            .map(|p| format!("{p:.1}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    app.shutdown();
    Ok(())
}

/// Waits for the end of the probation of the upgrade that started at `started_ms`.
fn verdict(
    c: &crate::control::Controller,
    name: &str,
    started_ms: i64,
) -> anyhow::Result<crate::control::UpgradeRecord> {
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let status = c.status(name)?;
        if let Some(u) = status.upgrades.iter().find(|u| u.started_ms == started_ms)
            && u.result != crate::control::UpgradeResult::Probation
        {
            return Ok(u.clone());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the upgrade's probation did not end"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}
