use super::engine::EngineParts;
use super::host::{HostState, TaskInfo};
use super::{ComponentError, Limits, OperatorInstance, bindings, cache, validate};
use crate::state::OperatorState;
use sha2::{Digest, Sha256};
use std::sync::Arc;

/// A validated, compiled operator component, ready to instantiate many times.
#[derive(Clone)]
pub struct OperatorComponent {
    parts: Arc<EngineParts>,
    pre: bindings::OperatorPre<HostState>,
    /// Where `packed-handler` is, when the component exports it.
    packed: Option<bindings::packed::GuestIndices>,
    digest: String,
    size: usize,
    imports: Arc<Vec<String>>,
    exports: Arc<Vec<String>>,
}

/// The sha256 of a binary, hex-encoded: the identity of an operator version.
pub fn digest_of(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(crate) fn load(
    parts: &Arc<EngineParts>,
    bytes: &[u8],
) -> Result<OperatorComponent, ComponentError> {
    validate::check_binary(bytes)?;
    let digest = digest_of(bytes);
    let cache_dir = parts.config.cache_dir.as_deref();
    let component = match cache_dir.and_then(|dir| cache::load(dir, &parts.engine, &digest)) {
        Some(c) => c,
        None => {
            let c = wasmtime::component::Component::new(&parts.engine, bytes)
                .map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
            // Check before caching, so a refused component leaves nothing behind.
            validate::check_world(&parts.engine, &c)?;
            if let Some(dir) = cache_dir {
                cache::store(dir, &parts.engine, &digest, &c);
            }
            c
        }
    };
    let (imports, exports) = validate::check_world(&parts.engine, &component)?;
    let instance_pre = parts
        .linker
        .instantiate_pre(&component)
        .map_err(|e| ComponentError::Incompatible(format!("{e:#}")))?;
    let packed = match exports.iter().any(|e| validate::is_packed_handler(e)) {
        true => Some(
            bindings::packed::GuestIndices::new(&instance_pre)
                .map_err(|e| ComponentError::Incompatible(format!("{e:#}")))?,
        ),
        false => None,
    };
    let pre = bindings::OperatorPre::new(instance_pre)
        .map_err(|e| ComponentError::Incompatible(format!("{e:#}")))?;
    Ok(OperatorComponent {
        parts: Arc::clone(parts),
        pre,
        packed,
        digest,
        size: bytes.len(),
        imports: Arc::new(imports),
        exports: Arc::new(exports),
    })
}

impl OperatorComponent {
    /// sha256 of the binary, hex.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Size of the binary in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Names of the interfaces the component imports.
    pub fn imports(&self) -> &[String] {
        &self.imports
    }

    /// Names of the interfaces the component exports.
    pub fn exports(&self) -> &[String] {
        &self.exports
    }

    /// A fresh instance serving `info`, reading and writing `state`, within `limits`.
    /// Call [`OperatorInstance::init`] before anything else.
    pub fn instantiate(
        &self,
        info: TaskInfo,
        state: OperatorState,
        limits: Limits,
    ) -> Result<OperatorInstance, (super::CallError, OperatorState)> {
        OperatorInstance::new(
            &self.parts,
            &self.pre,
            self.packed.as_ref(),
            info,
            state,
            limits,
        )
    }
}
