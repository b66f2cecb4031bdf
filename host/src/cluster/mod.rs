//! Several `eddy serve` processes as one cluster (`--cluster NAME`): they share pipelines
//! and operators through a compacted catalog topic in Kafka, and split every shared
//! pipeline's source partitions through a consumer group, as Kafka Streams instances do.

mod catalog;
mod entries;
mod follower;
mod keys;
mod membership;

pub use catalog::Catalog;
pub use follower::{CatalogApplier, CatalogEvent};
pub use keys::CatalogKey;
pub use membership::{AssignmentHandler, Membership, SESSION_TIMEOUT};

/// The compacted, single-partition topic holding a cluster's catalog: operator binaries
/// (chunked), operator versions, pipeline records and which server runs which task.
/// One partition keeps one order: an operator always arrives before the pipelines that
/// use it.
pub fn catalog_topic(cluster: &str) -> String {
    format!("eddy.{cluster}.catalog")
}

/// The consumer group deciding which server runs which partition of a shared pipeline.
/// Offsets are not committed here but in the pipeline's own group
/// ([`crate::kafka::KafkaNames::group`]): Kafka refuses plain offset commits from outside a group
/// that has members, and per-task transactional ids already fence a previous owner.
pub fn assignment_group(cluster: &str, pipeline: &str) -> String {
    format!("eddy.{cluster}.{pipeline}.assign")
}

/// A server's name in the cluster: `--server-name`, else one made up once and kept in
/// the data dir.
pub fn server_name(given: Option<&str>, data_dir: &std::path::Path) -> std::io::Result<String> {
    if let Some(name) = given.filter(|n| !n.trim().is_empty()) {
        // It becomes part of catalog keys (`tasks/<pipeline>/<server>`).
        crate::model::spec::check_name("server", name.trim())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        return Ok(name.trim().to_string());
    }
    let path = data_dir.join("server-name");
    match std::fs::read_to_string(&path) {
        Ok(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        _ => {
            let host: String = std::env::var("HOSTNAME")
                .unwrap_or_else(|_| "eddy".into())
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                        c
                    } else {
                        '-'
                    }
                })
                .take(40)
                .collect();
            let name = format!("{host}-{:08x}", rand::random::<u32>());
            std::fs::write(&path, &name)?;
            Ok(name)
        }
    }
}
