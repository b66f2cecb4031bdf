//! What a task reads and writes, as interfaces: a source partition it polls and a sink
//! that commits its outputs together with its state. The embedded log (`log/`) and
//! Kafka (`kafka/`) implement them; tasks (`task/`) use them and know neither.

mod watermark;

pub use watermark::{WATERMARK_HEADER, read_watermark, watermark_record};

use crate::record::Record;
use crate::record::batch::{self, EventBatch};
use crate::state::changelog::OperatorChanges;
use crate::state::{Commit, SourcePosition, StateError, TaskPosition};

/// Why a source could not be read or a sink could not commit.
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    #[error("source: {0}")]
    Source(String),
    #[error("sink: {0}")]
    Sink(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Records read from a source partition.
pub struct SourceBatch {
    pub events: EventBatch,
    /// The source offset of each event.
    pub offsets: Vec<u64>,
    /// Which of the task's sources the events come from (0 unless it reads several).
    pub source: usize,
}

impl SourceBatch {
    /// Events `range` of the batch.
    pub fn slice(&self, range: std::ops::Range<usize>) -> SourceBatch {
        SourceBatch {
            events: batch::slice(&self.events, range.clone()),
            offsets: self.offsets[range].to_vec(),
            source: self.source,
        }
    }
}

/// The port (and so the topic `<pipeline>.shadow`) of a shadow run's records.
pub const SHADOW_PORT: &str = "shadow";

/// What one committed unit of work produced.
pub struct Outputs {
    /// The last operator's main output, for the sink.
    pub main: EventBatch,
    /// Side outputs: `(port, record)`, for topic `<pipeline>.<port>`.
    pub side: Vec<(String, Record)>,
    /// Records for the dead-letter topic, the error in their headers.
    pub dead: Vec<Record>,
    /// A shadow run's records, for topic `<pipeline>.shadow`.
    pub shadow: EventBatch,
}

impl Outputs {
    pub fn empty() -> Self {
        Outputs {
            main: EventBatch::default(),
            side: Vec::new(),
            dead: Vec::new(),
            shadow: EventBatch::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.main.events.is_empty()
            && self.side.is_empty()
            && self.dead.is_empty()
            && self.shadow.events.is_empty()
    }
}

/// Where a task reads its partition.
pub trait TaskSource: Send {
    /// Up to `max` records from offset `from` (none when there are none yet).
    fn poll(&mut self, from: u64, max: usize) -> Result<SourceBatch, IoError>;
    /// The partition's current end offset.
    fn end_offset(&self) -> u64;
    /// Whether `end_offset` has been answered (a remote partition's end is asked for in
    /// the background of reads; until an answer comes it reads 0).
    fn end_known(&self) -> bool {
        true
    }
    /// Whether the reader has handed over every record below `end`, so one standing
    /// before it has nothing left to wait for: the offsets in between hold no record (a
    /// Kafka transaction's marker). A local partition hands everything over at once.
    fn fetched_to(&self, _end: u64) -> bool {
        false
    }
}

/// Where a task's outputs go, and how its commit is written. The task hands the sink
/// its commit (state changes and position) with the outputs of every batch since the
/// last commit; an embedded-topic sink adds the outputs to the same atomic write, so
/// state, position and outputs land together.
pub trait Sink {
    /// The position the next commit makes durable (a Kafka sink commits it as the
    /// source offset in its transaction).
    fn position(&mut self, _position: TaskPosition) {}

    /// Every source's position the next commit makes durable, for a task reading
    /// several sources (a Kafka sink records them in its transaction).
    fn sources(&mut self, _sources: &[SourcePosition]) {}

    /// The upstream tasks' watermarks the next commit makes durable, for a task after a
    /// repartition (a Kafka sink records them in its transaction).
    fn upstream(&mut self, _watermarks: &[i64]) {}

    /// Writes `commit` with `outputs`. `changes` lists the commit's state changes for
    /// the changelogs (empty when the task keeps none).
    fn commit(
        &mut self,
        commit: Commit,
        outputs: Vec<Outputs>,
        changes: Vec<OperatorChanges>,
    ) -> Result<(), IoError>;
}

/// A sink outside the database (a file, a counter): the commit is written first, then
/// `deliver` gets the outputs. A crash between the two loses outputs the commit already
/// accounts for, so it suits tools and benchmarks, not exactly-once pipelines.
pub struct AfterCommit<F>(pub F);

impl<F: FnMut(Vec<Outputs>) -> Result<(), IoError>> Sink for AfterCommit<F> {
    fn commit(
        &mut self,
        commit: Commit,
        outputs: Vec<Outputs>,
        _changes: Vec<OperatorChanges>,
    ) -> Result<(), IoError> {
        commit.write()?;
        (self.0)(outputs)
    }
}
