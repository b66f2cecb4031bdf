//! The generated bindings for the `operator` world. Private to the SDK: operator authors
//! see `Event`, `Context` and `Store`, never these types.

wit_bindgen::generate!({
    world: "operator",
    path: "../wit",
    pub_export_macro: true,
    default_bindings_module: "::eddy_guest::__private::bindings",
    runtime_path: "::eddy_guest::__private::wit_bindgen::rt",
});
