//! How the SDK reaches the host: the WIT imports on wasm, an in-memory host natively so
//! operators (and this crate) can be unit-tested with plain `cargo test`.

#[cfg(target_arch = "wasm32")]
mod wasm;
#[cfg(target_arch = "wasm32")]
pub(crate) use wasm::*;

#[cfg(not(target_arch = "wasm32"))]
pub(crate) mod native;
#[cfg(not(target_arch = "wasm32"))]
pub(crate) use native::*;
