//! C: bindings from wit-bindgen-c and the `eddy.h` helper, compiled by clang against
//! wasi-libc, then made a component in-process with wit-component and the WASI preview1
//! reactor adapter (no wit-bindgen or wasm-tools binaries to install).

use super::sdk;
use super::toolchain::{BuildError, Tool, write_if_changed};
use std::path::{Path, PathBuf};
use std::process::Command;
use wit_bindgen_core::wit_parser::Resolve;

const CLANG: Tool = Tool {
    name: "clang",
    env: "EDDY_CLANG",
    install: "apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 (or use wasi-sdk's clang)",
};

/// The C files of a project: `*.c` in its directory and in `src/`.
pub fn sources(dir: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let mut found = Vec::new();
    for sub in [dir.to_path_buf(), dir.join("src")] {
        let Ok(entries) = std::fs::read_dir(&sub) else {
            continue;
        };
        for entry in entries {
            let path = entry.map_err(|e| BuildError::io(&sub, e))?.path();
            if path.extension().is_some_and(|e| e == "c") && path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    Ok(found)
}

pub fn build(dir: &Path) -> Result<PathBuf, BuildError> {
    let sources = sources(dir)?;
    if sources.is_empty() {
        return Err(BuildError::Project(format!(
            "{}: no .c files here or in src/",
            dir.display()
        )));
    }
    let clang = CLANG.find("C operators")?;
    let sysroot = sysroot()?;
    let work = write_sdk(dir)?;

    let module = work.join("module.wasm");
    CLANG.run(
        Command::new(clang)
            .args([
                "--target=wasm32-wasi",
                "-mexec-model=reactor",
                "-O2",
                "-Wall",
            ])
            .arg(format!("--sysroot={}", sysroot.display()))
            .arg("-I")
            .arg(&work)
            .args(&sources)
            .arg(work.join("packed_operator.c"))
            .arg(work.join("eddy.c"))
            .arg(work.join("eddy_store.c"))
            .arg(work.join("eddy_config.c"))
            .arg(work.join("packed_operator_component_type.o"))
            .arg("-o")
            .arg(&module),
    )?;
    let core = std::fs::read(&module).map_err(|e| BuildError::io(&module, e))?;
    let component = componentize(&core).map_err(BuildError::Component)?;
    let out = super::output_path(dir, &super::dir_name(dir));
    std::fs::write(&out, component).map_err(|e| BuildError::io(&out, e))?;
    Ok(out)
}

/// Writes the bindings and the SDK's sources and headers into `.eddy/c`, and returns it.
pub fn write_sdk(dir: &Path) -> Result<PathBuf, BuildError> {
    let work = super::work_dir(dir)?.join("c");
    generate_bindings(&work)?;
    sdk::write(sdk::C, &work)?;
    Ok(work)
}

/// wasi-libc's root: `EDDY_WASI_SYSROOT`, else Debian's layout under /usr.
fn sysroot() -> Result<PathBuf, BuildError> {
    let root = std::env::var_os("EDDY_WASI_SYSROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr"));
    if root.join("include/wasm32-wasi/stdlib.h").is_file()
        || root.join("include/stdlib.h").is_file()
    {
        Ok(root)
    } else {
        Err(BuildError::ToolMissing {
            tool: format!("wasi-libc (looked in {})", root.display()),
            what: "C operators",
            install: "apt-get install wasi-libc lld libclang-rt-dev-wasm32 (or set EDDY_WASI_SYSROOT to wasi-sdk's sysroot)"
                .into(),
        })
    }
}

/// Writes `packed_operator.h`, `packed_operator.c` and `packed_operator_component_type.o`
/// for the world `packed-operator`.
fn generate_bindings(work: &Path) -> Result<(), BuildError> {
    let mut resolve = Resolve::default();
    let (wit_path, wit_text) = sdk::WIT[0];
    let package = resolve
        .push_str(wit_path, wit_text)
        .map_err(|e| BuildError::Project(format!("the embedded WIT does not parse: {e:#}")))?;
    let world = resolve
        .select_world(&[package], Some("packed-operator"))
        .map_err(|e| {
            BuildError::Project(format!(
                "the embedded WIT has no world `packed-operator`: {e:#}"
            ))
        })?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| BuildError::Project(format!("cannot generate C bindings: {e:#}")))?;
    for (name, contents) in files.iter() {
        write_if_changed(&work.join(name), contents)?;
    }
    Ok(())
}

/// The component of a core module built against the bindings (which embed the world's
/// type); wasi-libc's preview1 imports go through the reactor adapter.
fn componentize(core: &[u8]) -> anyhow::Result<Vec<u8>> {
    use wasi_preview1_component_adapter_provider::{
        WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    };
    wit_component::ComponentEncoder::default()
        .module(core)?
        .adapter(
            WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME,
            WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )?
        .validate(true)
        .encode()
}
