//! The `bindgen!`s of the host: the `operator` world every component satisfies, and the
//! optional `packed-handler` export (WIT 0.1.1) of components built by today's SDKs.
//! Every other module imports the generated types from here.

wasmtime::component::bindgen!({
    world: "operator",
    path: "../wit",
    imports: { default: trappable },
    with: {
        "eddy:operator/state.store": crate::runtime::host::StoreHandle,
    },
});

/// The `packed-operator` world, for its one extra export; its imports and types are the
/// ones above.
pub mod packed {
    wasmtime::component::bindgen!({
        world: "packed-operator",
        path: "../wit",
        imports: { default: trappable },
        with: {
            "eddy:operator/types": super::eddy::operator::types,
            "eddy:operator/state": super::eddy::operator::state,
            "eddy:operator/timers": super::eddy::operator::timers,
            "eddy:operator/log": super::eddy::operator::log,
            "eddy:operator/context": super::eddy::operator::context,
        },
    });

    pub use exports::eddy::operator::packed_handler::{Guest as PackedGuest, GuestIndices};
}

pub use eddy::operator::types::{
    BatchError, ByteList, Error as GuestError, EventBatch, EventMeta, HeaderMeta, KvBatch, KvMeta,
    OperatorInfo, OutputBatch, OutputMeta, PackedBatch, PackedOutput, PackedWrites, Span,
};
