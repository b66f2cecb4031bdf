use super::{Cf, Db, StateError, keys};
use rocksdb::WriteBatch;

/// Which task: a pipeline's stage (0 unless the pipeline repartitions) and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub pipeline: String,
    pub stage: u32,
    pub partition: u32,
}

impl TaskId {
    /// Stage 0 of `pipeline`.
    pub fn new(pipeline: &str, partition: u32) -> Self {
        TaskId {
            pipeline: pipeline.to_string(),
            stage: 0,
            partition,
        }
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.stage == 0 {
            write!(f, "{}#{}", self.pipeline, self.partition)
        } else {
            write!(
                f,
                "{}/stage {}#{}",
                self.pipeline, self.stage, self.partition
            )
        }
    }
}

/// Where a task stands, committed with every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPosition {
    /// The next source offset to read.
    pub offset: u64,
    /// The task's watermark.
    pub watermark: i64,
}

impl TaskPosition {
    pub const START: TaskPosition = TaskPosition {
        offset: 0,
        watermark: i64::MIN,
    };

    fn encode(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.offset.to_be_bytes());
        b[8..].copy_from_slice(&self.watermark.to_be_bytes());
        b
    }

    fn decode(bytes: &[u8]) -> Result<Self, StateError> {
        let b: [u8; 16] = bytes.try_into().map_err(|_| StateError::Corrupt {
            what: "task position",
            detail: format!("{} bytes, expected 16", bytes.len()),
        })?;
        Ok(TaskPosition {
            offset: u64::from_be_bytes(b[..8].try_into().unwrap()),
            watermark: i64::from_be_bytes(b[8..].try_into().unwrap()),
        })
    }
}

/// The committed position of a task, or the start when it never committed.
pub fn load_position(db: &Db, task: &TaskId) -> Result<TaskPosition, StateError> {
    match db.get(
        Cf::Meta,
        &keys::position_key(&task.pipeline, task.stage, task.partition),
    )? {
        None => Ok(TaskPosition::START),
        Some(bytes) => TaskPosition::decode(&bytes),
    }
}

/// Adds a task's new position to a commit.
pub fn put_position(db: &Db, batch: &mut WriteBatch, task: &TaskId, position: TaskPosition) {
    batch.put_cf(
        db.cf(Cf::Meta),
        keys::position_key(&task.pipeline, task.stage, task.partition),
        position.encode(),
    );
}

/// The meta key of the upstream watermarks of a task after a repartition.
fn upstream_key(task: &TaskId) -> Vec<u8> {
    let mut key = keys::position_key(&task.pipeline, task.stage, task.partition);
    key.extend_from_slice(b"/upstream");
    key
}

/// The committed watermarks of a later-stage task's upstream tasks (empty when none).
pub fn load_upstream_watermarks(db: &Db, task: &TaskId) -> Result<Vec<i64>, StateError> {
    let Some(bytes) = db.get(Cf::Meta, &upstream_key(task))? else {
        return Ok(Vec::new());
    };
    if bytes.len() % 8 != 0 {
        return Err(StateError::Corrupt {
            what: "upstream watermarks",
            detail: format!("{} bytes, not a multiple of 8", bytes.len()),
        });
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| i64::from_be_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

/// Adds a task's upstream watermarks to a commit (it lives beside its position, so a
/// pipeline's deletion takes it too).
pub fn put_upstream_watermarks(db: &Db, batch: &mut WriteBatch, task: &TaskId, watermarks: &[i64]) {
    let bytes: Vec<u8> = watermarks.iter().flat_map(|w| w.to_be_bytes()).collect();
    batch.put_cf(db.cf(Cf::Meta), upstream_key(task), bytes);
}

/// Where a task reading several sources (input partitions) stands in one of them: the
/// next offset to read and the source's own watermark. The task's `TaskPosition` holds
/// the first source's offset and the task's watermark; these hold every source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourcePosition {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub watermark: i64,
    /// A table or broadcast source being read to its end before any stream (the
    /// bootstrap of a first start): that end, kept so a restart goes on with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_to: Option<u64>,
}

/// The meta key of the source positions of a task with several sources.
fn sources_key(task: &TaskId) -> Vec<u8> {
    let mut key = keys::position_key(&task.pipeline, task.stage, task.partition);
    key.extend_from_slice(b"/sources");
    key
}

/// The committed source positions of a task with several sources (empty when none).
pub fn load_source_positions(db: &Db, task: &TaskId) -> Result<Vec<SourcePosition>, StateError> {
    let Some(bytes) = db.get(Cf::Meta, &sources_key(task))? else {
        return Ok(Vec::new());
    };
    serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
        what: "source positions",
        detail: e.to_string(),
    })
}

/// Adds a task's source positions to a commit (beside its position, so a pipeline's
/// deletion takes them too).
pub fn put_source_positions(
    db: &Db,
    batch: &mut WriteBatch,
    task: &TaskId,
    sources: &[SourcePosition],
) {
    let bytes = serde_json::to_vec(sources).expect("positions serialize");
    batch.put_cf(db.cf(Cf::Meta), sources_key(task), bytes);
}

/// The state format an operator's state was last written in, as recorded by
/// [`crate::state::Commit::put_state_version`]; `None` when never recorded.
pub fn load_state_version(
    db: &Db,
    pipeline: &str,
    operator: &str,
) -> Result<Option<u32>, StateError> {
    let Some(bytes) = db.get(Cf::Meta, &keys::state_version_key(pipeline, operator))? else {
        return Ok(None);
    };
    let b: [u8; 4] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StateError::Corrupt {
            what: "state version",
            detail: format!("{} bytes, expected 4", bytes.len()),
        })?;
    Ok(Some(u32::from_be_bytes(b)))
}
