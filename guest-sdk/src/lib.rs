//! Write Eddy stream operators in Rust.
//!
//! An operator handles one record at a time, keeps durable state in named stores, and
//! emits events. Batching, the flat wire format and the WIT bindings stay inside this
//! crate. Build with `cargo build --target wasm32-wasip2 --release` and hand the `.wasm`
//! to `eddy run` or `eddy operator push`.
//!
//! ```
//! use eddy_guest::prelude::*;
//!
//! #[derive(Default)]
//! struct WordCount;
//!
//! impl Operator for WordCount {
//!     fn process(&mut self, event: Event, ctx: &mut Context) -> Result<(), Error> {
//!         let counts = ctx.store("counts")?;
//!         for word in event.value_str()?.split_whitespace() {
//!             let n = counts.increment(word, 1)?;
//!             ctx.emit(Event::new(word, n.to_string()));
//!         }
//!         Ok(())
//!     }
//! }
//! eddy_guest::export!(WordCount);
//!
//! // Natively, the same operator runs against an in-memory host:
//! let mut h = eddy_guest::testing::Harness::new(WordCount).unwrap();
//! let out = h.process(Event::keyless("a b a").at(1)).unwrap();
//! assert_eq!(out[2].event, Event::new("a", "2").at(1));
//! ```

// The generated code names this crate by its path, from inside it too.
extern crate self as eddy_guest;

mod backend;
#[doc(hidden)]
pub mod bindings;
mod cache;
mod config;
mod context;
mod dispatch;
mod error;
mod event;
mod flat;
pub mod join;
mod join_window;
mod operator;
mod packed;
mod store;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod window;

pub use config::Config;
pub use context::{Context, LogLevel, TaskInfo};
pub use error::{Error, Result};
pub use event::{Event, IntoBytes};
pub use operator::Operator;
pub use store::{Scan, Store};

/// The input name of a pipeline with one `[source]` (what [`Event::input`] answers there).
pub const SOURCE_INPUT: &str = "source";

/// Everything an operator usually needs.
pub mod prelude {
    pub use crate::{Config, Context, Error, Event, LogLevel, Operator, Store};
}

/// Exports an [`Operator`] type (which must implement `Default`) as the component's
/// `handler` (and `packed-handler`, which the host prefers). Call it once per operator crate.
#[macro_export]
macro_rules! export {
    ($operator:ty) => {
        // Off wasm the component exports are meaningless (and their names do not link
        // natively); native builds use `testing::Harness` instead.
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __EddyHandler;

            impl $crate::__private::Guest for __EddyHandler {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<$crate::__private::OperatorInfo, ::std::string::String> {
                    $crate::__private::init::<$operator>(config)
                }
                fn process(
                    batch: $crate::__private::EventBatch,
                ) -> ::std::result::Result<$crate::__private::OutputBatch, $crate::__private::BatchError> {
                    $crate::__private::process(batch)
                }
                fn on_timer(
                    key: ::std::vec::Vec<u8>,
                    at: i64,
                ) -> ::std::result::Result<$crate::__private::OutputBatch, $crate::__private::WitError> {
                    $crate::__private::on_timer(key, at)
                }
                fn migrate(
                    store: ::std::string::String,
                    from_version: u32,
                    entries: $crate::__private::KvBatch,
                ) -> ::std::result::Result<$crate::__private::ByteList, ::std::string::String> {
                    $crate::__private::migrate(store, from_version, entries)
                }
            }

            impl $crate::__private::PackedGuest for __EddyHandler {
                fn process(
                    batch: $crate::__private::PackedBatch,
                ) -> ::std::result::Result<$crate::__private::PackedOutput, $crate::__private::BatchError> {
                    $crate::__private::process_packed(batch)
                }
            }

            $crate::__private::bindings::export!(__EddyHandler with_types_in $crate::__private::bindings);
        };
    };
}

/// Used by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::bindings::eddy::operator::types::{
        BatchError, ByteList, Error as WitError, EventBatch, KvBatch, OperatorInfo, OutputBatch,
        PackedBatch, PackedOutput,
    };
    pub use crate::bindings::exports::eddy::operator::handler::Guest;
    pub use crate::bindings::exports::eddy::operator::packed_handler::Guest as PackedGuest;
    pub use crate::dispatch::{init, migrate, on_timer, process, process_packed};
    pub use wit_bindgen;
}
