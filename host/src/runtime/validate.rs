//! Checks that a binary is an operator component Eddy can run, with errors that say what
//! is wrong and how to fix it.

use super::ComponentError;
use wasmtime::Engine;
use wasmtime::component::Component;

/// Whether `name` is `interface` of Eddy's package at a 0.1.x version (the world only
/// grows additively, so `handler@0.1.0` is what every operator exports).
fn is_eddy_export(name: &str, interface: &str) -> bool {
    name.split_once('@').is_some_and(|(path, version)| {
        path.strip_prefix("eddy:operator/") == Some(interface) && version.starts_with("0.1.")
    })
}

/// Whether `name` is the optional export with packed batches (since 0.1.1).
pub(crate) fn is_packed_handler(name: &str) -> bool {
    is_eddy_export(name, "packed-handler")
}

/// Interfaces a component may import: Eddy's own, and WASI 0.2 (linked locked down).
fn is_granted(import: &str) -> bool {
    let (path, version) = import.split_once('@').unwrap_or((import, ""));
    match path.split_once('/') {
        Some(("eddy:operator", iface)) => {
            matches!(iface, "types" | "state" | "timers" | "log" | "context")
                && version.starts_with("0.1.")
        }
        Some((pkg, _)) => {
            matches!(
                pkg,
                "wasi:cli"
                    | "wasi:clocks"
                    | "wasi:random"
                    | "wasi:io"
                    | "wasi:filesystem"
                    | "wasi:sockets"
            ) && version.starts_with("0.2.")
        }
        None => false,
    }
}

/// Rejects what is not a component before anything is compiled.
pub(crate) fn check_binary(bytes: &[u8]) -> Result<(), ComponentError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(ComponentError::NotWasm);
    }
    if wasmparser::Parser::is_core_wasm(bytes) {
        return Err(ComponentError::CoreModule);
    }
    if !wasmparser::Parser::is_component(bytes) {
        return Err(ComponentError::Invalid(
            "unknown WebAssembly binary version".into(),
        ));
    }
    Ok(())
}

/// The component's imports and exports by name, checked against what Eddy grants.
pub(crate) fn check_world(
    engine: &Engine,
    component: &Component,
) -> Result<(Vec<String>, Vec<String>), ComponentError> {
    let ty = component.component_type();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if !exports.iter().any(|e| is_eddy_export(e, "handler")) {
        let exports = if exports.is_empty() {
            "nothing".to_string()
        } else {
            exports.join(", ")
        };
        return Err(ComponentError::WrongWorld { exports });
    }
    if let Some(bad) = imports.iter().find(|i| !is_granted(i)) {
        return Err(ComponentError::ForbiddenImport {
            import: bad.clone(),
        });
    }
    Ok((imports, exports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_eddy_and_wasi_p2_only() {
        assert!(is_granted("eddy:operator/state@0.1.0"));
        assert!(is_granted("eddy:operator/state@0.1.1"));
        assert!(is_granted("wasi:sockets/tcp@0.2.6"));
        assert!(is_granted("wasi:cli/environment@0.2.0"));
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_granted("eddy:operator/handler@0.1.0"));
        assert!(!is_granted("eddy:forbidden/raw-network"));
        assert!(!is_granted("wasi:cli/environment@0.3.0"));
        assert!(!is_granted("env"));
    }

    #[test]
    fn knows_the_handlers_of_every_0_1_version() {
        assert!(is_eddy_export("eddy:operator/handler@0.1.0", "handler"));
        assert!(is_eddy_export("eddy:operator/handler@0.1.1", "handler"));
        assert!(!is_eddy_export("eddy:operator/handler@0.2.0", "handler"));
        assert!(!is_eddy_export("eddy:operator/handler", "handler"));
        assert!(is_packed_handler("eddy:operator/packed-handler@0.1.1"));
        assert!(!is_packed_handler("eddy:operator/handler@0.1.1"));
    }

    #[test]
    fn rejects_non_components_up_front() {
        assert!(matches!(
            check_binary(b"hello"),
            Err(ComponentError::NotWasm)
        ));
        assert!(matches!(
            check_binary(b"\0asm\x01\0\0\0"),
            Err(ComponentError::CoreModule)
        ));
        assert!(matches!(check_binary(b"\0asm\x0d\0\x01\0"), Ok(())));
    }
}
