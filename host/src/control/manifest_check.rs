//! Checks of a savepoint manifest that need no files: every name is one a pipeline could
//! have written, every task and store file belongs to a stage and partition of the
//! manifest's own pipeline, nothing appears twice, every number adds up. A manifest can
//! come from an upload (hostile) or from a folder someone edited, so it is checked on
//! upload and again before every restore, before anything changes.

use super::manifest::{Manifest, SavepointError};
use crate::model::spec::check_name;
use crate::model::stages;
use crate::state::changelog::TIMERS_STORE;
use crate::state::check_store_name;
use crate::state::savepoint::store_file_path;
use std::collections::{BTreeMap, BTreeSet};

/// Most partitions one stage of a savepoint may have.
const PARTITIONS_MAX: u32 = 100_000;

/// What a checked manifest says about its pipeline's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Partitions (= tasks) per stage, in stage order.
    pub partitions: Vec<u32>,
    /// Each operator id's stage.
    pub stage_of: BTreeMap<String, u32>,
}

impl Shape {
    /// The partitions of the stage that runs `operator`.
    pub fn partitions_of(&self, operator: &str) -> u32 {
        self.stage_of
            .get(operator)
            .map_or(0, |&s| self.partitions[s as usize])
    }
}

fn corrupt(why: String) -> SavepointError {
    SavepointError::Corrupt(format!("manifest.json: {why}"))
}

/// Checks everything a manifest claims that does not need its files.
pub fn check(m: &Manifest) -> Result<Shape, SavepointError> {
    super::manifest::check_id(&m.id)
        .map_err(|_| corrupt(format!("invalid savepoint id {:?}", m.id)))?;
    m.spec
        .validate()
        .map_err(|e| corrupt(format!("its pipeline spec is invalid: {e}")))?;
    if m.pipeline != m.spec.name {
        return Err(corrupt(format!(
            "it names pipeline {:?} but holds the spec of {:?}",
            m.pipeline, m.spec.name
        )));
    }
    let ids: Vec<&str> = m.spec.operators.iter().map(|o| o.id()).collect();
    let saved: Vec<&str> = m.operators.iter().map(|o| o.id.as_str()).collect();
    if ids != saved {
        return Err(corrupt(format!(
            "its operators {saved:?} are not the spec's {ids:?}"
        )));
    }
    for o in &m.operators {
        check_name("operator", &o.name).map_err(|e| corrupt(e.to_string()))?;
        if o.version == 0 || o.state_version == 0 {
            return Err(corrupt(format!(
                "operator {:?}: versions count from 1",
                o.id
            )));
        }
    }

    let stages = stages(&m.spec);
    let mut stage_of = BTreeMap::new();
    for s in &stages {
        for &i in &s.ops {
            stage_of.insert(m.spec.operators[i].id().to_string(), s.index);
        }
    }
    // Every stage's tasks are partitions 0..n, each once.
    let mut by_stage: Vec<BTreeSet<u32>> = vec![BTreeSet::new(); stages.len()];
    for t in &m.tasks {
        let Some(set) = by_stage.get_mut(t.stage as usize) else {
            return Err(corrupt(format!(
                "a task of stage {}, but the pipeline has {} stage(s)",
                t.stage,
                stages.len()
            )));
        };
        if t.partition >= PARTITIONS_MAX {
            return Err(corrupt(format!(
                "task partition {} (at most {PARTITIONS_MAX} partitions)",
                t.partition
            )));
        }
        // Offsets become Kafka offsets (i64; -1 and -2 mean "end" and "beginning").
        if t.offset > i64::MAX as u64 {
            return Err(corrupt(format!(
                "stage {} partition {} has offset {}, past the largest offset {}",
                t.stage,
                t.partition,
                t.offset,
                i64::MAX
            )));
        }
        if !set.insert(t.partition) {
            return Err(corrupt(format!(
                "stage {} partition {} appears twice",
                t.stage, t.partition
            )));
        }
        check_sources(t)?;
    }
    let mut partitions = Vec::new();
    for (stage, set) in by_stage.iter().enumerate() {
        let n = set.len() as u32;
        if n == 0 || set.last() != Some(&(n - 1)) {
            return Err(corrupt(format!(
                "stage {stage} must hold tasks for partitions 0 to N-1, it holds {:?}",
                set.iter().take(10).collect::<Vec<_>>()
            )));
        }
        partitions.push(n);
    }
    for t in &m.tasks {
        let upstream = match t.stage {
            0 => 0,
            s => partitions[s as usize - 1],
        };
        if t.upstream_watermarks.len() > upstream as usize {
            return Err(corrupt(format!(
                "stage {} partition {} has {} upstream watermarks, its upstream stage {} partition(s)",
                t.stage,
                t.partition,
                t.upstream_watermarks.len(),
                upstream
            )));
        }
    }
    let shape = Shape {
        partitions,
        stage_of,
    };

    let mut seen = BTreeSet::new();
    let mut keys: u64 = 0;
    for f in &m.stores {
        if !shape.stage_of.contains_key(&f.operator) {
            return Err(corrupt(format!(
                "a store file of operator {:?}, which the pipeline does not have",
                f.operator
            )));
        }
        if f.store != TIMERS_STORE {
            check_store_name(&f.store).map_err(corrupt)?;
        }
        let partitions = shape.partitions_of(&f.operator);
        if f.partition >= partitions {
            return Err(corrupt(format!(
                "store {}/{} partition {}, but its stage has {partitions} partition(s)",
                f.operator, f.store, f.partition
            )));
        }
        if !seen.insert((&f.operator, &f.store, f.partition)) {
            return Err(corrupt(format!(
                "store {}/{} partition {} appears twice",
                f.operator, f.store, f.partition
            )));
        }
        let expected = store_file_path(&f.operator, &f.store, f.partition);
        if f.file != expected {
            return Err(corrupt(format!(
                "store {}/{} partition {} must be in file {expected:?}, not {:?}",
                f.operator, f.store, f.partition, f.file
            )));
        }
        if f.sha256.len() != 64
            || !f
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        {
            return Err(corrupt(format!(
                "file {}: sha256 must be 64 lowercase hex digits",
                f.file
            )));
        }
        keys = keys
            .checked_add(f.keys)
            .ok_or_else(|| corrupt("the key counts overflow".into()))?;
    }
    if keys != m.keys {
        return Err(corrupt(format!(
            "it claims {} keys but its store files hold {keys}",
            m.keys
        )));
    }
    Ok(shape)
}

/// The source positions of a task with several inputs: valid topic names, each topic
/// partition once, offsets within Kafka's range (and within what a task can hold).
fn check_sources(t: &super::manifest::SavedTask) -> Result<(), SavepointError> {
    if t.sources.len() > SOURCES_MAX {
        return Err(corrupt(format!(
            "stage {} partition {} has {} source positions (at most {SOURCES_MAX})",
            t.stage,
            t.partition,
            t.sources.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for s in &t.sources {
        check_name("topic", &s.topic).map_err(|e| corrupt(e.to_string()))?;
        if s.offset > i64::MAX as u64 || s.partition >= PARTITIONS_MAX {
            return Err(corrupt(format!(
                "stage {} partition {}: source {}/{} at offset {} is out of range",
                t.stage, t.partition, s.topic, s.partition, s.offset
            )));
        }
        if !seen.insert((s.topic.as_str(), s.partition)) {
            return Err(corrupt(format!(
                "stage {} partition {}: source {}/{} appears twice",
                t.stage, t.partition, s.topic, s.partition
            )));
        }
    }
    Ok(())
}

/// Source positions one task may hold (its inputs' partitions: broadcast inputs add all
/// of theirs).
const SOURCES_MAX: usize = 65_536;
