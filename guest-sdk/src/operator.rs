use crate::{Config, Context, Error, Event};

/// A stream operator. Implement [`Operator::process`], then export the type with
/// [`crate::export!`]; the SDK feeds it one record at a time.
///
/// Keep durable data in stores ([`Context::store`]), not in fields: the host may replace
/// the instance (after a trap, on an upgrade, on another server) and only stores survive.
pub trait Operator {
    /// Version of the format this operator writes to its stores. Raise it when the format
    /// changes and implement [`Operator::migrate`]; the host migrates every stored value
    /// when a pipeline is upgraded across versions.
    const STATE_VERSION: u32 = 1;

    /// Called once with the operator's `config` from the pipeline spec. An error stops
    /// the pipeline from starting, with its message.
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        let _ = config;
        Ok(())
    }

    /// Handles one record. Emit with [`Context::emit`]; return [`Error::BadInput`] for a
    /// record the pipeline's `on_error` policy should handle.
    fn process(&mut self, event: Event<'_>, ctx: &mut Context) -> Result<(), Error>;

    /// A timer set with [`Context::set_timer`] fired: the watermark reached `at`.
    fn on_timer(&mut self, key: Vec<u8>, at: i64, ctx: &mut Context) -> Result<(), Error> {
        let _ = (key, at, ctx);
        Ok(())
    }

    /// Converts one stored value of `store`, written in format `from_version`, to
    /// [`Operator::STATE_VERSION`]. `Ok(None)` deletes the key. The default keeps values.
    fn migrate(
        &mut self,
        store: &str,
        key: &[u8],
        value: Vec<u8>,
        from_version: u32,
    ) -> Result<Option<Vec<u8>>, Error> {
        let _ = (store, key, from_version);
        Ok(Some(value))
    }
}
