//! An operator as a task drives it: a Wasm component instance that is rebuilt after a
//! trap, or native Rust code (benchmarks, tests) behind the same trait.

use crate::record::batch::{EventBatch, OutputBatch};
use crate::runtime::bindings::GuestError;
use crate::runtime::{CallError, Interrupt, Limits, OperatorComponent, OperatorInstance, TaskInfo};
use crate::state::{Db, OperatorState, StateError, StateScope};
use std::sync::Arc;

/// A page of a store's entries handed to `migrate`: `(key, value)`.
pub type Entries = [(Vec<u8>, Vec<u8>)];
/// What `migrate` returns: per entry, its new value, or `None` to delete it.
pub type Migrated = Vec<Option<Vec<u8>>>;

/// One operator of a task's chain.
pub trait Operator: Send {
    /// `name@version`, for errors and metrics.
    fn label(&self) -> &str;
    /// The operator version it runs, when it runs a registered one.
    fn version(&self) -> Option<u32> {
        None
    }
    /// The config its `init` got.
    fn config(&self) -> &[(String, String)] {
        &[]
    }
    /// Handles a batch.
    fn process(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError>;
    /// Fires one timer.
    fn on_timer(&mut self, key: &[u8], at: i64) -> Result<OutputBatch, CallError>;
    /// The operator's state (with the current batch's overlay).
    fn state(&mut self) -> &mut OperatorState;
    /// Ends the operator, keeping its state (to hand it to another version).
    fn into_state(self: Box<Self>) -> OperatorState;
    /// Lets `flag` interrupt a call that runs when the task is stopping.
    fn set_interrupt(&mut self, _flag: Interrupt) {}
    /// The format version of the state it writes (declared by a Wasm operator's `init`).
    fn state_version(&self) -> u32 {
        1
    }
    /// Converts a page of a store written in format `from_version`: one item per entry,
    /// the new value or `None` to delete it.
    fn migrate(&mut self, store: &str, from: u32, page: &Entries) -> Result<Migrated, CallError> {
        let _ = (store, from, page);
        Err(CallError::Failed(GuestError::Fatal(format!(
            "{} cannot migrate state",
            self.label()
        ))))
    }
}

/// A Wasm operator. A trap poisons the instance: the next call gets a fresh one (started
/// with the same config); the state, held outside the instance, carries over.
pub struct WasmOperator {
    label: String,
    component: OperatorComponent,
    info: TaskInfo,
    config: Vec<(String, String)>,
    limits: Limits,
    instance: Option<OperatorInstance>,
    /// The state while no instance holds it.
    parked: Option<OperatorState>,
    state_version: u32,
    /// Stops a running call when the task is stopping (every instance gets it).
    interrupt: Option<Interrupt>,
}

impl WasmOperator {
    /// Instantiates `component` for `info` within `limits` and runs its `init` with
    /// `config`.
    pub fn start(
        component: OperatorComponent,
        info: TaskInfo,
        config: Vec<(String, String)>,
        state: OperatorState,
        limits: Limits,
    ) -> Result<Self, (CallError, OperatorState)> {
        let label = format!("{}@{}", info.operator, info.version);
        let mut op = WasmOperator {
            label,
            component,
            info,
            config,
            limits,
            instance: None,
            parked: Some(state),
            state_version: 0,
            interrupt: None,
        };
        match op.instance() {
            Ok(_) => Ok(op),
            Err(e) => {
                let state = op
                    .parked
                    .take()
                    .expect("a failed start leaves the state parked");
                Err((e, state))
            }
        }
    }

    /// The component this operator runs.
    pub fn component(&self) -> &OperatorComponent {
        &self.component
    }

    fn instance(&mut self) -> Result<&mut OperatorInstance, CallError> {
        if self.instance.is_none() {
            let state = self
                .parked
                .take()
                .expect("without an instance the state is parked");
            let mut inst = match self
                .component
                .instantiate(self.info.clone(), state, self.limits)
            {
                Ok(i) => i,
                Err((e, state)) => {
                    self.parked = Some(state);
                    return Err(e);
                }
            };
            if let Some(flag) = &self.interrupt {
                inst.set_interrupt(std::sync::Arc::clone(flag));
            }
            match inst.init(&self.config) {
                Ok(info) => self.state_version = info.state_version,
                Err(e) => {
                    self.parked = Some(inst.into_state());
                    return Err(e);
                }
            }
            self.instance = Some(inst);
        }
        Ok(self.instance.as_mut().expect("just ensured"))
    }

    fn after<R>(&mut self, result: Result<R, CallError>) -> Result<R, CallError> {
        if let Err(CallError::Trap { .. }) = &result {
            let inst = self.instance.take().expect("a call ran on an instance");
            self.parked = Some(inst.into_state());
        }
        result
    }
}

impl Operator for WasmOperator {
    fn label(&self) -> &str {
        &self.label
    }

    fn version(&self) -> Option<u32> {
        Some(self.info.version)
    }

    fn config(&self) -> &[(String, String)] {
        &self.config
    }

    fn set_interrupt(&mut self, flag: Interrupt) {
        if let Some(inst) = &mut self.instance {
            inst.set_interrupt(std::sync::Arc::clone(&flag));
        }
        self.interrupt = Some(flag);
    }

    fn process(&mut self, batch: &EventBatch) -> Result<OutputBatch, CallError> {
        let r = self.instance()?.process(batch);
        self.after(r)
    }

    fn on_timer(&mut self, key: &[u8], at: i64) -> Result<OutputBatch, CallError> {
        let r = self.instance()?.on_timer(key, at);
        self.after(r)
    }

    fn state(&mut self) -> &mut OperatorState {
        match &mut self.instance {
            Some(inst) => inst.state(),
            None => self
                .parked
                .as_mut()
                .expect("without an instance the state is parked"),
        }
    }

    fn into_state(self: Box<Self>) -> OperatorState {
        let this = *self;
        match this.instance {
            Some(inst) => inst.into_state(),
            None => this
                .parked
                .expect("without an instance the state is parked"),
        }
    }

    fn state_version(&self) -> u32 {
        self.state_version
    }

    fn migrate(&mut self, store: &str, from: u32, page: &Entries) -> Result<Migrated, CallError> {
        let r = self.instance()?.migrate(store, from, page);
        self.after(r)
    }
}

/// Why an operator could not start in a task.
#[derive(Debug, thiserror::Error)]
pub enum OperatorStartError {
    #[error("{label}: {error}")]
    State { label: String, error: StateError },
    #[error("{label}: init failed: {message}")]
    Init { label: String, message: String },
}

/// How to start one operator of a pipeline in any of its tasks: the component, its
/// config and limits; the partition comes at the start.
#[derive(Clone)]
pub struct OperatorTemplate {
    pub component: OperatorComponent,
    pub pipeline: String,
    /// The operator's id in the pipeline (its state's scope).
    pub id: String,
    pub version: u32,
    pub config: Vec<(String, String)>,
    pub limits: Limits,
    /// The record cache of its state, in bytes.
    pub cache_bytes: usize,
    /// How errors name it (`operator <id>@<version>` unless set).
    pub label: String,
}

impl OperatorTemplate {
    pub fn new(
        component: OperatorComponent,
        pipeline: &str,
        id: &str,
        version: u32,
        config: Vec<(String, String)>,
        limits: Limits,
        cache_bytes: usize,
    ) -> Self {
        OperatorTemplate {
            component,
            pipeline: pipeline.to_string(),
            id: id.to_string(),
            version,
            config,
            limits,
            cache_bytes,
            label: format!("operator {id}@{version}"),
        }
    }

    /// Names the operator `label` in errors.
    pub fn labelled(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Starts the operator in task `partition` (of `partitions`) on its state there.
    pub fn start(
        &self,
        db: &Arc<Db>,
        partition: u32,
        partitions: u32,
    ) -> Result<WasmOperator, OperatorStartError> {
        let scope = StateScope {
            pipeline: self.pipeline.clone(),
            operator: self.id.clone(),
            partition,
        };
        let state =
            OperatorState::new(Arc::clone(db), scope, self.cache_bytes).map_err(|error| {
                OperatorStartError::State {
                    label: self.label.clone(),
                    error,
                }
            })?;
        self.start_on(state, partitions).map_err(|(e, _)| e)
    }

    /// Starts the operator on `state` (handed over from another version); gives the
    /// state back when it cannot start.
    pub fn start_on(
        &self,
        state: OperatorState,
        partitions: u32,
    ) -> Result<WasmOperator, (OperatorStartError, OperatorState)> {
        let info = TaskInfo {
            pipeline: self.pipeline.clone(),
            operator: self.id.clone(),
            version: self.version,
            partition: state.scope().partition,
            partition_count: partitions,
        };
        WasmOperator::start(
            self.component.clone(),
            info,
            self.config.clone(),
            state,
            self.limits,
        )
        .map_err(|(e, state)| {
            let error = OperatorStartError::Init {
                label: self.label.clone(),
                message: e.message(),
            };
            (error, state)
        })
    }
}

/// Stands in for an operator that could not be started: every call fails with the
/// reason, so the task fails with it; the state is kept.
pub struct Unavailable {
    label: String,
    reason: String,
    state: OperatorState,
}

impl Unavailable {
    pub fn new(label: impl Into<String>, reason: impl Into<String>, state: OperatorState) -> Self {
        Unavailable {
            label: label.into(),
            reason: reason.into(),
            state,
        }
    }

    fn error(&self) -> CallError {
        CallError::Failed(GuestError::Fatal(self.reason.clone()))
    }
}

impl Operator for Unavailable {
    fn label(&self) -> &str {
        &self.label
    }

    fn process(&mut self, _batch: &EventBatch) -> Result<OutputBatch, CallError> {
        Err(self.error())
    }

    fn on_timer(&mut self, _key: &[u8], _at: i64) -> Result<OutputBatch, CallError> {
        Err(self.error())
    }

    fn state(&mut self) -> &mut OperatorState {
        &mut self.state
    }

    fn into_state(self: Box<Self>) -> OperatorState {
        self.state
    }
}
