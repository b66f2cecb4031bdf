//! What a task reads and writes: a batch from its source, the outputs of a committed
//! unit of work, and the sink that commits them.

use super::{TaskError, batch};
use crate::record::Record;
use crate::runtime::bindings::EventBatch;
use crate::state::changelog::OperatorChanges;
use crate::state::{Db, TaskPosition};
use rocksdb::WriteBatch;

/// Records read from a source partition.
pub struct SourceBatch {
    pub events: EventBatch,
    /// The source offset of each event.
    pub offsets: Vec<u64>,
}

/// What one committed unit of work produced.
pub struct Outputs {
    /// The last operator's main output, for the sink.
    pub main: EventBatch,
    /// Side outputs: `(port, record)`, for topic `<pipeline>.<port>`.
    pub side: Vec<(String, Record)>,
    /// Records for the dead-letter topic, the error in their headers.
    pub dead: Vec<Record>,
}

impl Outputs {
    pub(super) fn empty() -> Self {
        Outputs {
            main: batch::empty(),
            side: Vec::new(),
            dead: Vec::new(),
        }
    }
}

/// Where a task's outputs go, and how its commit is written. The task hands the sink
/// its commit (state changes and position) with the outputs of every batch since the
/// last commit; an embedded-topic sink adds the outputs to the same RocksDB write, so
/// state, position and outputs land atomically.
pub trait Sink {
    /// The position the next commit makes durable (a Kafka sink commits it as the
    /// source offset in its transaction).
    fn position(&mut self, _position: TaskPosition) {}

    /// `changes` lists the commit's state changes for the changelogs (empty when the task
    /// keeps none).
    fn commit(
        &mut self,
        db: &Db,
        batch: WriteBatch,
        outputs: Vec<Outputs>,
        changes: Vec<OperatorChanges>,
    ) -> Result<(), TaskError>;
}
