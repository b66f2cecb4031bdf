//! Operators written in Rust and run natively through the same task path as Wasm ones:
//! the baseline of every benchmark, and handy in tests.

use super::Operator;
use crate::record::batch::{EventBatch, OutputBatch};
use crate::runtime::CallError;
use crate::state::OperatorState;

/// The logic of a native operator: a batch and the operator's state in, outputs out.
pub type NativeProcess =
    dyn FnMut(&EventBatch, &mut OperatorState) -> Result<OutputBatch, CallError> + Send;

/// A native operator: a closure over flat batches with direct access to its state.
pub struct NativeOperator {
    label: String,
    state: OperatorState,
    process: Box<NativeProcess>,
}

impl NativeOperator {
    pub fn new(
        label: impl Into<String>,
        state: OperatorState,
        process: Box<NativeProcess>,
    ) -> Self {
        NativeOperator {
            label: label.into(),
            state,
            process,
        }
    }
}

impl Operator for NativeOperator {
    fn label(&self) -> &str {
        &self.label
    }

    fn process(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError> {
        (self.process)(batch, &mut self.state)
    }

    fn on_timer(&mut self, _key: &[u8], _at: i64) -> Result<OutputBatch, CallError> {
        Ok(OutputBatch::default())
    }

    fn state(&mut self) -> &mut OperatorState {
        &mut self.state
    }

    fn into_state(self: Box<Self>) -> OperatorState {
        self.state
    }
}
