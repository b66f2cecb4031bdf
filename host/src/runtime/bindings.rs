//! The one `bindgen!` of the host, for the `operator` world. Every other module imports
//! the generated types from here.

wasmtime::component::bindgen!({
    world: "operator",
    path: "../wit",
    imports: { default: trappable },
    with: {
        "eddy:operator/state.store": crate::runtime::host::StoreHandle,
    },
});

pub use eddy::operator::types::{
    BatchError, ByteList, Error as GuestError, EventBatch, EventMeta, HeaderMeta, KvBatch, KvMeta,
    OperatorInfo, OutputBatch, OutputMeta, Span,
};
