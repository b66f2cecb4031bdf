//! Checks that a binary is an operator component Eddy can run, with errors that say what
//! is wrong and how to fix it.

use super::ComponentError;
use wasmtime::Engine;
use wasmtime::component::Component;

/// The export every operator must have.
pub(crate) const HANDLER_EXPORT: &str = "eddy:operator/handler@0.1.0";

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
    if !exports.iter().any(|e| e == HANDLER_EXPORT) {
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
        assert!(is_granted("wasi:sockets/tcp@0.2.6"));
        assert!(is_granted("wasi:cli/environment@0.2.0"));
        assert!(!is_granted("wasi:http/outgoing-handler@0.2.0"));
        assert!(!is_granted("eddy:operator/handler@0.1.0"));
        assert!(!is_granted("eddy:forbidden/raw-network"));
        assert!(!is_granted("wasi:cli/environment@0.3.0"));
        assert!(!is_granted("env"));
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
