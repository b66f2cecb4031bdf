//! Compiled components on disk, keyed by the binary's digest and the engine's
//! compatibility hash, so a restart or a second run skips compilation.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::Engine;
use wasmtime::component::Component;

fn engine_hash(engine: &Engine) -> u64 {
    let mut h = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    h.finish()
}

fn entry(dir: &Path, engine: &Engine, digest: &str) -> PathBuf {
    dir.join(format!("{digest}-{:016x}.cwasm", engine_hash(engine)))
}

/// The cached compiled form of `digest`, if present and loadable.
pub(crate) fn load(dir: &Path, engine: &Engine, digest: &str) -> Option<Component> {
    let path = entry(dir, engine, digest);
    if !path.exists() {
        return None;
    }
    // SAFETY: only this module writes the cache directory, always with
    // `Component::serialize` of this engine configuration (the file name carries the
    // engine's compatibility hash, and wasmtime re-checks it on load).
    match unsafe { Component::deserialize_file(engine, &path) } {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::warn!(path = %path.display(), "ignoring unusable compiled component: {e}");
            None
        }
    }
}

/// Stores the compiled form of `digest`; failures only cost a later recompile.
pub(crate) fn store(dir: &Path, engine: &Engine, digest: &str, component: &Component) {
    let result = (|| -> Result<(), String> {
        let bytes = component.serialize().map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let path = entry(dir, engine, digest);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(|e| e.to_string())?;
        std::fs::rename(&tmp, &path).map_err(|e| e.to_string())
    })();
    if let Err(e) = result {
        tracing::warn!(dir = %dir.display(), "cannot cache a compiled component: {e}");
    }
}
