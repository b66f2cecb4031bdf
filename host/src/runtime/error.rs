use crate::runtime::bindings::GuestError;
use crate::state::StateError;

/// The runtime could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("wasm engine: {0}")]
    Engine(String),
}

/// Why a component was refused. Every message says what is wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    // The io error is in the message, not the source chain, so `{:#}` says it once.
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error(
        "not a WebAssembly binary (it does not start with \\0asm); upload the .wasm file your build wrote"
    )]
    NotWasm,
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 \
         (cargo build --target wasm32-wasip2) or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    #[error("invalid component: {0}")]
    Invalid(String),
    #[error(
        "the component does not export `eddy:operator/handler@0.1.x` (it exports: {exports}); \
         build it against the `operator` world of Eddy's wit/ folder"
    )]
    WrongWorld { exports: String },
    #[error(
        "the component imports `{import}`, which Eddy does not grant; operators may import \
         eddy:operator/{{state,timers,log,context}} and WASI 0.2 (cli, clocks, random, io, \
         filesystem, sockets — all locked down)"
    )]
    ForbiddenImport { import: String },
    #[error("the component does not match the world Eddy provides: {0}")]
    Incompatible(String),
}

/// What stopped a trap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrapKind {
    /// The call ran past its deadline (an endless loop, or far too much work per batch).
    Deadline,
    /// The instance tried to grow its memory beyond the limit.
    MemoryLimit,
    /// The call was interrupted because its task is stopping (not the operator's fault:
    /// the records it was handling are handled again after the next start).
    Stopped,
    /// A call went past one of the pipeline's `max_*` limits (a value, the state or the
    /// output of one call, its timers).
    Limit,
    /// Anything else: a panic, an out-of-bounds access, `unreachable`.
    Other,
}

/// A call into an operator failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// `process` returned a batch error: the record at `index` failed.
    #[error("{}", guest_message(error))]
    Rejected { index: u32, error: GuestError },
    /// `on-timer` returned an error.
    #[error("{}", guest_message(.0))]
    Failed(GuestError),
    /// The instance trapped; it must not be called again.
    #[error("{message}")]
    Trap { kind: TrapKind, message: String },
    /// The storage engine failed inside a host call.
    #[error(transparent)]
    Host(#[from] StateError),
}

impl CallError {
    /// The message without the error kind's prefix where the operator wrote it itself
    /// (an `init` or `migrate` refusal reads best as the operator's own words).
    pub fn message(&self) -> String {
        match self {
            CallError::Failed(GuestError::Fatal(m)) => m.clone(),
            other => other.to_string(),
        }
    }

    /// Whether the failure is the operator's declared fatal error (fail whatever the policy).
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            CallError::Rejected {
                error: GuestError::Fatal(_),
                ..
            } | CallError::Failed(GuestError::Fatal(_))
                | CallError::Host(_)
        )
    }
}

fn guest_message(e: &GuestError) -> String {
    match e {
        GuestError::BadInput(m) => format!("bad input: {m}"),
        GuestError::Fatal(m) => format!("fatal: {m}"),
    }
}
