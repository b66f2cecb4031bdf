//! The language an operator was written in, when its component says: `eddy build` names
//! it in the component's own producers section (`build::stamp_language`); otherwise the languages its core
//! modules' compilers recorded tell Rust (whose modules also carry the C of the WASI
//! libc) from C.

use wasm_metadata::Producers;
use wasmparser::{KnownCustom, Parser, Payload};

/// The language `eddy build` names (`rust`, `python`, `javascript`, `c`), or the one the
/// compilers recorded; `None` when nothing says (an interpreter's component made by
/// hand), or when what it says is not a language's name (an uploaded file is hostile).
pub fn detect(component: &[u8]) -> Option<String> {
    if let Ok(Some(own)) = Producers::from_wasm(component)
        && let Some(field) = own.get("language")
        && let Some((name, _)) = field.iter().next()
    {
        return normal(name);
    }
    let mut languages: Vec<String> = Vec::new();
    for payload in Parser::new(0).parse_all(component) {
        let Ok(Payload::CustomSection(section)) = payload else {
            continue;
        };
        if let KnownCustom::Producers(_) = section.as_known()
            && let Ok(producers) =
                Producers::from_bytes(section.data(), section.data_offset() as u64)
            && let Some(field) = producers.get("language")
        {
            languages.extend(field.iter().filter_map(|(name, _)| normal(name)));
        }
    }
    if languages.iter().any(|l| l == "rust") {
        return Some("rust".into());
    }
    languages.iter().any(|l| l == "c").then(|| "c".into())
}

/// A language's name in lower case, C's standards (C99, C11, C17) as `c`; `None` for
/// what is no name (over 32 characters, or other than letters, digits and `+#.-`).
fn normal(name: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "+#.-".contains(c);
    if name.is_empty() || name.len() > 32 || !name.chars().all(plain) {
        return None;
    }
    let name = name.to_lowercase();
    Some(match name.strip_prefix('c') {
        Some(year) if year.chars().all(|c| c.is_ascii_digit()) => "c".into(),
        _ => name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_names_the_language_and_compilers_tell_rust_from_c() {
        // A component that says nothing, then one `eddy build` stamped.
        let empty = wat_component();
        assert_eq!(detect(&empty), None);
        let mut own = Producers::empty();
        own.add("language", "Python", "");
        let stamped = own.add_to_wasm(&empty).unwrap();
        assert_eq!(detect(&stamped), Some("python".into()));
        // Core modules' own languages: Rust (with the C of its libc), or C alone.
        let mut rust = Producers::empty();
        rust.add("language", "Rust", "");
        rust.add("language", "C11", "");
        assert_eq!(
            detect(&rust.add_to_wasm(&core_module()).unwrap()),
            Some("rust".into())
        );
        let mut c = Producers::empty();
        c.add("language", "C99", "");
        assert_eq!(
            detect(&c.add_to_wasm(&core_module()).unwrap()),
            Some("c".into())
        );
    }

    /// The smallest component: the preamble alone.
    fn wat_component() -> Vec<u8> {
        vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
    }

    fn core_module() -> Vec<u8> {
        vec![0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]
    }
}
