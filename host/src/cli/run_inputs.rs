//! `eddy run`'s inputs: which file feeds which input of the spec (`--input NAME=FILE`,
//! or `--input FILE` for a pipeline with one input), and a pipeline with several
//! inputs run over their files through the same merge as a server's task.

use crate::io::{IoError, Sink, SourceBatch, TaskSource};
use crate::model::{InputKind, InputSpec, PipelineSpec, SOURCE_INPUT};
use crate::record::{self, Record, batch};
use crate::task::{Inputs, Task, TaskSourceInfo};
use anyhow::{Context as _, bail};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The spec's inputs, each with its file.
pub(super) fn input_files(
    spec: &PipelineSpec,
    given: &[String],
) -> anyhow::Result<Vec<(InputSpec, PathBuf)>> {
    let mut inputs = spec.input_specs();
    if inputs.is_empty() {
        // A spec for `eddy run` may leave its source out.
        inputs.push(InputSpec {
            name: SOURCE_INPUT.to_string(),
            topic: crate::model::TopicRef::embedded(SOURCE_INPUT),
            kind: InputKind::Stream,
            repartition: false,
        });
    }
    let names: Vec<&str> = inputs.iter().map(|i| i.name.as_str()).collect();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for g in given {
        let (name, file) = match g.split_once('=') {
            Some((name, file)) if names.contains(&name) => (name.to_string(), file),
            Some((name, _)) if !Path::new(g).exists() => bail!(
                "--input {name}=...: the pipeline has no input called {name:?} (its inputs: {})",
                names.join(", ")
            ),
            _ if inputs.len() == 1 => (inputs[0].name.clone(), g.as_str()),
            _ => bail!(
                "--input {g:?}: this pipeline has several inputs ({}): write --input NAME=FILE for each",
                names.join(", ")
            ),
        };
        if files.insert(name.clone(), PathBuf::from(file)).is_some() {
            bail!("--input {name}: given twice");
        }
    }
    inputs
        .into_iter()
        .map(|input| match files.remove(&input.name) {
            Some(file) => Ok((input, file)),
            None => bail!(
                "input {:?} has no file: add --input {}=FILE",
                input.name,
                input.name
            ),
        })
        .collect()
}

/// What the task of `eddy run` reads: one source per input (a file is one partition).
pub(super) fn task_sources(inputs: &[(InputSpec, PathBuf)]) -> Vec<TaskSourceInfo> {
    inputs
        .iter()
        .map(|(input, _)| TaskSourceInfo {
            input: Arc::from(input.name.as_str()),
            kind: input.kind,
            topic: input.topic.topic.clone(),
            partition: 0,
            // One task reads each file whole: every record is its own.
            repartition: None,
        })
        .collect()
}

/// Runs the files of a pipeline with several inputs through `task`, merged by event
/// time as a server's task merges its sources (tables first).
pub(super) fn feed_merged(
    task: &mut Task,
    inputs: &[(InputSpec, PathBuf)],
    batch_size: usize,
    sink: &mut dyn Sink,
) -> anyhow::Result<()> {
    // Offsets continue from where a run with the same state directory stopped.
    let start = task.source_offsets();
    let mut sources: Vec<(Box<dyn TaskSource>, InputKind)> = Vec::new();
    for ((input, path), &base) in inputs.iter().zip(&start) {
        let records = read_records(path)?;
        sources.push((Box::new(FileSource { records, base }), input.kind));
    }
    let mut reader = Inputs::new(sources);
    loop {
        let bootstrap = task.bootstrap_targets(&|i| reader.end_offset(i));
        let polled = reader.poll(&task.source_offsets(), &bootstrap, batch_size)?;
        if polled.batch.offsets.is_empty() {
            return Ok(());
        }
        task.process(&polled.batch, sink)?;
    }
}

fn read_records(path: &Path) -> anyhow::Result<Vec<Record>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open input {}", path.display()))?;
    let mut out = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.with_context(|| format!("cannot read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let (r, _) = record::parse_line(&line, record::now_ms()).expect("validated before the run");
        out.push(r);
    }
    Ok(out)
}

/// A file's records as one partition whose offsets start at `base`.
struct FileSource {
    records: Vec<Record>,
    base: u64,
}

impl TaskSource for FileSource {
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError> {
        let first = from.saturating_sub(self.base) as usize;
        let mut events = batch::empty();
        let mut offsets = Vec::new();
        for (i, r) in self.records.iter().enumerate().skip(first).take(max) {
            batch::push_record(&mut events, r);
            offsets.push(self.base + i as u64);
        }
        Ok(SourceBatch {
            events,
            offsets,
            source: 0,
        })
    }

    fn end_offset(&self) -> u64 {
        self.base + self.records.len() as u64
    }
}
