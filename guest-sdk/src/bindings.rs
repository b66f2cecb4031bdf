//! The generated bindings for the `packed-operator` world (`operator` with batches packed). Private to the SDK: operator authors
//! see `Event`, `Context` and `Store`, never these types.

wit_bindgen::generate!({
    world: "packed-operator",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "::eddy_guest::__private::bindings",
    runtime_path: "::eddy_guest::__private::wit_bindgen::rt",
});
