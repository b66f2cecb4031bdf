use super::{Cf, Db, StateError, keys};
use rocksdb::WriteBatch;

/// Where a task stands, committed with every batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskPosition {
    /// The next source offset to read.
    pub offset: u64,
    /// The task's watermark.
    pub watermark: i64,
}

impl TaskPosition {
    pub const START: TaskPosition = TaskPosition { offset: 0, watermark: i64::MIN };

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
pub fn load_position(db: &Db, pipeline: &str, partition: u32) -> Result<TaskPosition, StateError> {
    match db.get(Cf::Meta, &keys::position_key(pipeline, partition))? {
        None => Ok(TaskPosition::START),
        Some(bytes) => TaskPosition::decode(&bytes),
    }
}

/// Adds a task's new position to a commit.
pub fn stage_position(db: &Db, batch: &mut WriteBatch, pipeline: &str, partition: u32, position: TaskPosition) {
    batch.put_cf(db.cf(Cf::Meta), keys::position_key(pipeline, partition), position.encode());
}
