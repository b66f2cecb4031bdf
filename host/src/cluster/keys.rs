//! The keys of the cluster catalog's records, one variant per kind of record, written
//! and read in one place.

use std::fmt;
use std::str::FromStr;

/// What a catalog record is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogKey {
    /// A server's start marker: it has read the catalog up to here.
    Sync { server: String },
    /// One chunk of an operator binary (`owner` = its digest) or of a savepoint archive
    /// (`owner` = `savepoint.<id>`).
    Chunk { owner: String, index: u32 },
    /// An operator version (deleted when the value is empty).
    Operator { name: String, version: u32 },
    /// A savepoint (deleted when the value is empty).
    Savepoint { id: String },
    /// A restore of a shared pipeline, which the other servers' local state must follow.
    Restored { pipeline: String },
    /// A pipeline's record (deleted when the value is empty).
    Pipeline { name: String },
    /// The partitions a server runs of a pipeline.
    Tasks { pipeline: String, server: String },
    /// A server's watermarks of a pipeline stage.
    Clock {
        pipeline: String,
        stage: u32,
        server: String,
    },
    /// A hold of a pipeline for a savepoint.
    Hold { pipeline: String },
    /// What a server holds for a pipeline's hold.
    Held { pipeline: String, server: String },
    /// A server's report in a pipeline's upgrade.
    Upgrade { pipeline: String, server: String },
}

impl CatalogKey {
    /// The chunk owner of a savepoint's archive.
    pub fn savepoint_owner(id: &str) -> String {
        format!("savepoint.{id}")
    }

    /// Whether only the newest record of the key matters (a state, not an event).
    pub fn is_state(&self) -> bool {
        matches!(
            self,
            CatalogKey::Pipeline { .. }
                | CatalogKey::Tasks { .. }
                | CatalogKey::Restored { .. }
                | CatalogKey::Clock { .. }
                | CatalogKey::Upgrade { .. }
                | CatalogKey::Hold { .. }
                | CatalogKey::Held { .. }
        )
    }
}

impl fmt::Display for CatalogKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatalogKey::Sync { server } => write!(f, "sync/{server}"),
            CatalogKey::Chunk { owner, index } => write!(f, "chunk/{owner}/{index}"),
            CatalogKey::Operator { name, version } => write!(f, "operator/{name}/{version}"),
            CatalogKey::Savepoint { id } => write!(f, "savepoint/{id}"),
            CatalogKey::Restored { pipeline } => write!(f, "restored/{pipeline}"),
            CatalogKey::Pipeline { name } => write!(f, "pipeline/{name}"),
            CatalogKey::Tasks { pipeline, server } => write!(f, "tasks/{pipeline}/{server}"),
            CatalogKey::Clock {
                pipeline,
                stage,
                server,
            } => write!(f, "clock/{pipeline}/{stage}/{server}"),
            CatalogKey::Hold { pipeline } => write!(f, "hold/{pipeline}"),
            CatalogKey::Held { pipeline, server } => write!(f, "held/{pipeline}/{server}"),
            CatalogKey::Upgrade { pipeline, server } => write!(f, "upgrade/{pipeline}/{server}"),
        }
    }
}

impl FromStr for CatalogKey {
    type Err = String;

    /// Reads a key (names hold no `/`: they are checked names and ids).
    fn from_str(key: &str) -> Result<Self, String> {
        let bad = || format!("unknown catalog key {key:?}");
        let number = |s: &str| s.parse::<u32>().map_err(|_| bad());
        let parts: Vec<&str> = key.split('/').collect();
        let s = |i: usize| parts[i].to_string();
        Ok(match parts.as_slice() {
            ["sync", _] => CatalogKey::Sync { server: s(1) },
            ["chunk", _, index] => CatalogKey::Chunk {
                owner: s(1),
                index: number(index)?,
            },
            ["operator", _, version] => CatalogKey::Operator {
                name: s(1),
                version: number(version)?,
            },
            ["savepoint", _] => CatalogKey::Savepoint { id: s(1) },
            ["restored", _] => CatalogKey::Restored { pipeline: s(1) },
            ["pipeline", _] => CatalogKey::Pipeline { name: s(1) },
            ["tasks", _, _] => CatalogKey::Tasks {
                pipeline: s(1),
                server: s(2),
            },
            ["clock", _, stage, _] => CatalogKey::Clock {
                pipeline: s(1),
                stage: number(stage)?,
                server: s(3),
            },
            ["hold", _] => CatalogKey::Hold { pipeline: s(1) },
            ["held", _, _] => CatalogKey::Held {
                pipeline: s(1),
                server: s(2),
            },
            ["upgrade", _, _] => CatalogKey::Upgrade {
                pipeline: s(1),
                server: s(2),
            },
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_reads_back_as_written() {
        let keys = [
            CatalogKey::Sync { server: "a".into() },
            CatalogKey::Chunk {
                owner: CatalogKey::savepoint_owner("wc-1-ab"),
                index: 3,
            },
            CatalogKey::Operator {
                name: "wordcount".into(),
                version: 2,
            },
            CatalogKey::Savepoint {
                id: "wc-1-ab".into(),
            },
            CatalogKey::Restored {
                pipeline: "wc".into(),
            },
            CatalogKey::Pipeline { name: "wc".into() },
            CatalogKey::Tasks {
                pipeline: "wc".into(),
                server: "a".into(),
            },
            CatalogKey::Clock {
                pipeline: "wc".into(),
                stage: 1,
                server: "b".into(),
            },
            CatalogKey::Hold {
                pipeline: "wc".into(),
            },
            CatalogKey::Held {
                pipeline: "wc".into(),
                server: "a".into(),
            },
            CatalogKey::Upgrade {
                pipeline: "wc".into(),
                server: "a".into(),
            },
        ];
        for k in keys {
            assert_eq!(k.to_string().parse::<CatalogKey>(), Ok(k.clone()), "{k}");
        }
        assert_eq!(
            CatalogKey::Clock {
                pipeline: "p".into(),
                stage: 0,
                server: "s".into()
            }
            .to_string(),
            "clock/p/0/s"
        );
        for bad in [
            "",
            "pipeline",
            "operator/x/one",
            "chunk/d",
            "what/x",
            "tasks/p",
        ] {
            assert!(bad.parse::<CatalogKey>().is_err(), "{bad}");
        }
    }
}
