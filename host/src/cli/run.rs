//! `eddy run`: a pipeline over a bounded file, no server. The way to try an operator.

use super::run_inputs;
use crate::io::{AfterCommit, IoError, Outputs, Sink, SourceBatch};
use crate::model::PipelineSpec;
use crate::record::batch;
use crate::record::{self, Record};
use crate::runtime::{Limits, Runtime, RuntimeConfig};
use crate::state::{Commit, Db, DbOptions, TaskId, load_state_version};
use crate::task::{Operator, OperatorTemplate, Task, TaskConfig};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct RunArgs {
    /// The pipeline spec (TOML).
    pipeline: PathBuf,
    /// Events to process, one JSON object per line: `--input FILE` for a pipeline with
    /// one input, `--input NAME=FILE` for each of its `[[inputs]]`.
    #[arg(long, required = true, value_name = "[NAME=]FILE")]
    input: Vec<String>,
    /// Where the last operator's output goes, as JSON lines. Side outputs go to
    /// OUT.<port>.jsonl and dead letters to OUT.dlq.jsonl beside it.
    #[arg(long)]
    output: PathBuf,
    /// Keep state here; a later run with the same directory continues from it.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Load operator NAME from FILE instead of its `path` in the spec (repeatable).
    #[arg(long = "operator", value_name = "NAME=FILE")]
    operators: Vec<String>,
    /// Do not fire the end-of-input watermark (use when a later run continues this input).
    #[arg(long)]
    keep_open: bool,
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let text = std::fs::read_to_string(&args.pipeline)
        .with_context(|| format!("cannot read pipeline spec {}", args.pipeline.display()))?;
    let spec =
        PipelineSpec::from_toml(&text).with_context(|| args.pipeline.display().to_string())?;
    let paths = operator_paths(&spec, &args)?;
    let inputs = run_inputs::input_files(&spec, &args.input)?;
    let mut lines = 0;
    for (_, file) in &inputs {
        lines += validate_input(file)?;
    }

    let _temp;
    let state_dir = match &args.state_dir {
        Some(dir) => dir.clone(),
        None => {
            _temp = tempfile::tempdir().context("cannot create a temporary state directory")?;
            _temp.path().to_path_buf()
        }
    };
    let db = Arc::new(Db::open(&state_dir.join("db"), &DbOptions::default())?);
    let settings = &spec.settings;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(compile_cache_dir(args.state_dir.as_deref())),
        ..RuntimeConfig::default()
    })?;

    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    for (op, path) in spec.operators.iter().zip(&paths) {
        if !path.exists() {
            bail!(
                "operator {}: {} does not exist; build the operator first (`eddy build DIR` writes DIR/<name>.wasm)",
                op.id(),
                path.display()
            );
        }
        let component = runtime
            .load_file(path)
            .with_context(|| format!("operator {} ({})", op.id(), path.display()))?;
        let template = OperatorTemplate::new(
            component,
            &spec.name,
            op.id(),
            1,
            op.config_pairs(),
            Limits::from_settings(settings),
            (settings.state_cache_mb as usize) << 20,
        )
        .labelled(format!("operator {}", op.id()));
        let mut operator: Box<dyn Operator> = Box::new(template.start(&db, 0, 1)?);
        migrate_if_needed(operator.as_mut(), &db, &spec.name, op.id())?;
        ops.push(operator);
    }
    // One task reads the whole file, so a repartition changes nothing here.
    let config = TaskConfig {
        sources: run_inputs::task_sources(&inputs),
        ..TaskConfig::from_settings(settings)
    };
    let mut task = Task::new(TaskId::new(&spec.name, 0), ops, config, db)?;
    let mut files = FileSink::create(&args.output)?;
    {
        let mut sink = AfterCommit(|outputs| files.write(outputs));
        match &inputs[..] {
            [(_, file)] => feed(&mut task, file, settings.batch_size, &mut sink)?,
            _ => run_inputs::feed_merged(&mut task, &inputs, settings.batch_size, &mut sink)?,
        }
        if args.keep_open {
            task.flush(&mut sink)?;
        } else {
            task.finish_input(&mut sink)?;
        }
    }
    files.finish()?;
    let stats = task.stats();
    eprintln!(
        "{}: {} events in, {} out, {} failed records, in {} ms ({} lines in {})",
        spec.name,
        stats.events_in,
        stats.events_out,
        stats.errors,
        started.elapsed().as_millis(),
        lines,
        inputs
            .iter()
            .map(|(_, f)| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// Runs the operator's `migrate` over its state when the state directory holds state of
/// another `state-version` (as a server's upgrade does), and records the version the
/// state is in, in the same commit.
fn migrate_if_needed(
    op: &mut dyn Operator,
    db: &Arc<Db>,
    pipeline: &str,
    id: &str,
) -> anyhow::Result<()> {
    let now = op.state_version();
    let recorded = load_state_version(db, pipeline, id)?;
    if recorded == Some(now) {
        return Ok(());
    }
    // State without a recorded version (a directory from before versions were recorded,
    // or a copy of a server's): the format of a first version, the SDKs' default.
    let stored = !db
        .stores(pipeline, Some(id))?
        .iter()
        .all(|(name, _)| name.store == crate::state::TIMERS);
    let before = recorded.or_else(|| {
        stored.then(|| {
            eprintln!("operator {id}: no state-version recorded with its state: taking it as 1");
            1
        })
    });
    if before == Some(now) {
        return record_state_version(op, db, pipeline, id, now);
    }
    if let Some(before) = before {
        eprintln!(
            "operator {id}: the state was written in state-version {before}, the operator reads {now}: migrating it"
        );
        let started = Instant::now();
        let keys = crate::task::migrate(op, db, before)
            .map_err(|e| anyhow::anyhow!("operator {id}: cannot migrate its state: {e}"))?;
        eprintln!(
            "operator {id}: migrated {keys} keys in {} ms",
            started.elapsed().as_millis()
        );
    }
    record_state_version(op, db, pipeline, id, now)
}

/// Commits what the operator's state holds with the state-version it is in.
fn record_state_version(
    op: &mut dyn Operator,
    db: &Arc<Db>,
    pipeline: &str,
    id: &str,
    version: u32,
) -> anyhow::Result<()> {
    let mut commit = Commit::new(Arc::clone(db));
    op.state().stage(&mut commit, None);
    commit.put_state_version(pipeline, id, version);
    commit.write()?;
    op.state().committed();
    Ok(())
}

/// Runs the input file through the task in batches.
fn feed(
    task: &mut Task,
    path: &Path,
    batch_size: usize,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut events = batch::empty();
    let mut offsets = Vec::new();
    let mut offset = 0u64;
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (r, _) = record::parse_line(&line, record::now_ms()).expect("validated before the run");
        batch::push_record(&mut events, &r);
        offsets.push(offset);
        offset += 1;
        if offsets.len() == batch_size {
            let source = SourceBatch {
                events: std::mem::replace(&mut events, batch::empty()),
                offsets: std::mem::take(&mut offsets),
                source: 0,
            };
            process_whole(task, source, sink)?;
        }
    }
    if !offsets.is_empty() {
        let source = SourceBatch {
            events,
            offsets,
            source: 0,
        };
        process_whole(task, source, sink)?;
    }
    Ok(())
}

/// Hands `batch` to the task until it went past its end: a task leaves the rest of a
/// batch after a record that trapped for its next read, as a server's task reads again.
fn process_whole(
    task: &mut Task,
    mut batch: SourceBatch,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    loop {
        task.process(&batch, sink)?;
        let reached = task.source_offsets()[batch.source];
        let last = *batch.offsets.last().expect("a batch has events");
        let Some(k) = batch.offsets.iter().position(|&o| o >= reached) else {
            return Ok(());
        };
        if k == 0 || reached > last || task.halted() {
            return Ok(()); // done, or no further (a probation holds it)
        }
        batch = batch.slice(k..batch.offsets.len());
    }
}

/// The file of each operator: `--operator NAME=FILE`, else `path` relative to the spec.
fn operator_paths(spec: &PipelineSpec, args: &RunArgs) -> anyhow::Result<Vec<PathBuf>> {
    let mut overrides = BTreeMap::new();
    for o in &args.operators {
        let Some((name, file)) = o.split_once('=') else {
            bail!("--operator {o:?}: write NAME=FILE");
        };
        if !spec.operators.iter().any(|op| op.id() == name) {
            bail!("--operator {name}: the pipeline has no operator called {name:?}");
        }
        overrides.insert(name.to_string(), PathBuf::from(file));
    }
    let base = args.pipeline.parent().unwrap_or(Path::new("."));
    spec.operators
        .iter()
        .map(|op| match (overrides.get(op.id()), &op.path) {
            (Some(file), _) => Ok(file.clone()),
            (None, Some(path)) => Ok(base.join(path)),
            (None, None) => bail!(
                "operator {} has no `path`; eddy run loads local .wasm files (or pass --operator {}=FILE)",
                op.id(),
                op.id()
            ),
        })
        .collect()
}

/// Reads the whole input once before anything runs, so a malformed line stops the run
/// before any state changes. Returns the number of events.
fn validate_input(path: &Path) -> anyhow::Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open input {}", path.display()))?;
    let mut n = 0;
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        record::parse_line(&line, 0).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        n += 1;
    }
    Ok(n)
}

/// Compiled components: beside the state, or in the user's cache.
fn compile_cache_dir(state_dir: Option<&Path>) -> PathBuf {
    match state_dir {
        Some(dir) => dir.join("compiled"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("eddy")
            .join("compiled"),
    }
}

/// Writes outputs to JSON-lines files after each commit.
struct FileSink {
    stem: PathBuf,
    main: BufWriter<File>,
    side: BTreeMap<String, BufWriter<File>>,
}

impl FileSink {
    fn create(output: &Path) -> anyhow::Result<Self> {
        let main = File::create(output)
            .with_context(|| format!("cannot create output {}", output.display()))?;
        let name = output
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem = output.with_file_name(name.strip_suffix(".jsonl").unwrap_or(&name));
        Ok(FileSink {
            stem,
            main: BufWriter::new(main),
            side: BTreeMap::new(),
        })
    }

    fn side_file(&mut self, port: &str) -> Result<&mut BufWriter<File>, IoError> {
        if !self.side.contains_key(port) {
            let path = PathBuf::from(format!("{}.{port}.jsonl", self.stem.display()));
            let f = File::create(&path)
                .map_err(|e| IoError::Sink(format!("cannot create {}: {e}", path.display())))?;
            self.side.insert(port.to_string(), BufWriter::new(f));
        }
        Ok(self.side.get_mut(port).expect("just inserted"))
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.main.flush()?;
        for f in self.side.values_mut() {
            f.flush()?;
        }
        Ok(())
    }
}

fn write_line(w: &mut impl Write, r: &Record) -> Result<(), IoError> {
    writeln!(w, "{}", record::to_json_line(r)).map_err(|e| IoError::Sink(e.to_string()))
}

impl FileSink {
    /// Writes the outputs of a commit (which is written first: a file cannot join the
    /// RocksDB write).
    fn write(&mut self, outputs: Vec<Outputs>) -> Result<(), IoError> {
        for o in outputs {
            for r in batch::records(&o.main) {
                write_line(&mut self.main, &r)?;
            }
            for (port, r) in &o.side {
                write_line(self.side_file(port)?, r)?;
            }
            for r in &o.dead {
                write_line(self.side_file("dlq")?, r)?;
            }
        }
        Ok(())
    }
}
