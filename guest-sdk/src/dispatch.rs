//! The glue between the generated `handler` export and an [`Operator`]: one instance per
//! component instance, decoding flat batches into records and encoding what they emit.

use crate::bindings::eddy::operator::types::{
    BatchError, ByteList, Error as WitError, EventBatch, KvBatch, OperatorInfo, OutputBatch,
    PackedBatch, PackedOutput,
};
use crate::{Config, Context, Error, Event, Operator, flat, packed};
use std::cell::RefCell;

/// An operator with its context, behind a trait object so the export glue is not generic.
pub(crate) trait Dispatch {
    fn process(&mut self, batch: EventBatch) -> Result<OutputBatch, BatchError>;
    fn process_packed(&mut self, batch: PackedBatch) -> Result<PackedOutput, BatchError>;
    fn on_timer(&mut self, key: Vec<u8>, at: i64) -> Result<OutputBatch, WitError>;
    fn migrate(
        &mut self,
        store: String,
        from_version: u32,
        entries: KvBatch,
    ) -> Result<ByteList, String>;
}

pub(crate) struct Runner<O> {
    pub(crate) op: O,
    pub(crate) ctx: Context,
}

impl From<Error> for WitError {
    fn from(e: Error) -> Self {
        match e {
            Error::BadInput(m) => WitError::BadInput(m),
            Error::Fatal(m) => WitError::Fatal(m),
        }
    }
}

impl<O: Operator> Runner<O> {
    pub(crate) fn start(
        mut op: O,
        config: Vec<(String, String)>,
    ) -> Result<(Self, OperatorInfo), String> {
        op.init(&Config::new(config))
            .map_err(|e| e.message().to_string())?;
        let info = OperatorInfo {
            state_version: O::STATE_VERSION,
        };
        Ok((
            Runner {
                op,
                ctx: Context::new(),
            },
            info,
        ))
    }
}

impl<O: Operator> Runner<O> {
    /// Runs the events of a batch; under a state `epoch`, the stores' caches may serve
    /// the next batch too.
    fn run<'a>(
        &mut self,
        events: impl Iterator<Item = Event<'a>>,
        epoch: Option<u64>,
    ) -> Result<(), BatchError> {
        self.ctx.out.clear();
        self.ctx.begin(epoch);
        crate::event::set_current_input(crate::backend::current_input().as_deref());
        for (index, event) in events.enumerate() {
            self.ctx.current_timestamp = event.timestamp;
            if let Err(error) = self.op.process(event, &mut self.ctx) {
                self.ctx.out.clear();
                self.ctx.discard();
                return Err(BatchError {
                    index: index as u32,
                    error: error.into(),
                });
            }
        }
        self.ctx.finish(epoch.is_some());
        Ok(())
    }
}

impl<O: Operator> Dispatch for Runner<O> {
    fn process(&mut self, batch: EventBatch) -> Result<OutputBatch, BatchError> {
        // No state epoch comes this way: the caches last one batch.
        self.run(flat::events(&batch), None)?;
        Ok(self.ctx.out.take_flat())
    }

    fn process_packed(&mut self, batch: PackedBatch) -> Result<PackedOutput, BatchError> {
        self.run(packed::events(&batch), Some(batch.state_epoch))?;
        Ok(self.ctx.out.take())
    }

    fn on_timer(&mut self, key: Vec<u8>, at: i64) -> Result<OutputBatch, WitError> {
        self.ctx.out.clear();
        self.ctx.current_timestamp = at;
        crate::event::set_current_input(None);
        // No state epoch comes with a timer: it starts from the host's values.
        self.ctx.begin(None);
        match self.op.on_timer(key, at, &mut self.ctx) {
            Ok(()) => {
                self.ctx.finish(false);
                Ok(self.ctx.out.take_flat())
            }
            Err(e) => {
                self.ctx.out.clear();
                self.ctx.discard();
                Err(e.into())
            }
        }
    }

    fn migrate(
        &mut self,
        store: String,
        from_version: u32,
        entries: KvBatch,
    ) -> Result<ByteList, String> {
        let mut values = Vec::with_capacity(entries.entries.len());
        for (key, value) in flat::kv_entries(&entries) {
            let migrated = self
                .op
                .migrate(&store, key, value.to_vec(), from_version)
                .map_err(|e| {
                    format!(
                        "migrating store {store:?} key {:?}: {}",
                        String::from_utf8_lossy(key),
                        e.message()
                    )
                })?;
            values.push(migrated);
        }
        Ok(flat::byte_list(values.iter().map(|v| v.as_deref())))
    }
}

thread_local! {
    static RUNNER: RefCell<Option<Box<dyn Dispatch>>> = RefCell::new(None);
}

fn with_runner<R>(f: impl FnOnce(&mut dyn Dispatch) -> R) -> R {
    RUNNER.with(|r| {
        let mut r = r.borrow_mut();
        // The host always calls `init` first; anything else is a host bug: trap.
        let runner = r.as_mut().expect("eddy-guest: handler called before init");
        f(runner.as_mut())
    })
}

pub fn init<O: Operator + Default + 'static>(
    config: Vec<(String, String)>,
) -> Result<OperatorInfo, String> {
    let (runner, info) = Runner::start(O::default(), config)?;
    RUNNER.with(|r| *r.borrow_mut() = Some(Box::new(runner)));
    Ok(info)
}

pub fn process(batch: EventBatch) -> Result<OutputBatch, BatchError> {
    with_runner(|r| r.process(batch))
}

pub fn process_packed(batch: PackedBatch) -> Result<PackedOutput, BatchError> {
    with_runner(|r| r.process_packed(batch))
}

pub fn on_timer(key: Vec<u8>, at: i64) -> Result<OutputBatch, WitError> {
    with_runner(|r| r.on_timer(key, at))
}

pub fn migrate(store: String, from_version: u32, entries: KvBatch) -> Result<ByteList, String> {
    with_runner(|r| r.migrate(store, from_version, entries))
}
