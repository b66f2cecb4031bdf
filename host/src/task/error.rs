use crate::state::StateError;

/// Why a task stopped.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// A record failed and the policy is `fail`, or the operator reported a fatal error.
    #[error(
        "operator {operator}: process failed on record {offset} of partition {partition}: {message}"
    )]
    Record {
        operator: String,
        partition: u32,
        offset: u64,
        message: String,
    },
    /// A timer failed and the policy is `fail`, or the operator reported a fatal error.
    #[error("operator {operator}: timer at {at} failed on partition {partition}: {message}")]
    Timer {
        operator: String,
        partition: u32,
        at: i64,
        message: String,
    },
    /// The operator could not start or failed outside any one record.
    #[error("operator {operator} on partition {partition}: {message}")]
    Operator {
        operator: String,
        partition: u32,
        message: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    /// A call was interrupted because the task is stopping; what the batch did so far is
    /// dropped, and it is read again after the next start.
    #[error("the task is stopping: a call was interrupted")]
    Interrupted,
    /// The source could not be read or the sink could not commit.
    #[error(transparent)]
    Io(#[from] crate::io::IoError),
    /// A bug in the host: the task's step panicked (what it did since its last commit
    /// is done again after the next start).
    #[error("the task stopped on an internal error (please report it): {0}")]
    Panicked(String),
}
