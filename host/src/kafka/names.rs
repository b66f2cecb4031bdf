//! The names a pipeline takes in Kafka besides its inputs and outputs: its changelog and
//! positions topics, its consumer group and its tasks' transactional ids. A pipeline
//! created in a cluster carries the cluster's name in all of them, so two clusters on one
//! broker never share a topic, a group's offsets or a transactional id.

use crate::model::{PipelineRecord, Stage, stages, stages_through};
use crate::state::changelog::{changelog_store, changelog_topic};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaNames {
    /// What every name starts from: `<namespace>.<pipeline>`, or the pipeline's name.
    scope: String,
}

impl KafkaNames {
    pub fn new(namespace: Option<&str>, pipeline: &str) -> Self {
        let scope = match namespace {
            Some(ns) => format!("{ns}.{pipeline}"),
            None => pipeline.to_string(),
        };
        KafkaNames { scope }
    }

    /// The names of a pipeline, as its record fixed them when it was created.
    pub fn of(record: &PipelineRecord) -> Self {
        Self::new(record.namespace.as_deref(), &record.spec.name)
    }

    /// The compacted topic where each task records, inside its transactions, the source
    /// position its committed outputs reach: the broker-independent truth a restart
    /// resumes from (partition = task partition, key = [`super::position_key`]).
    pub fn positions(&self) -> String {
        format!("{}.positions", self.scope)
    }

    /// The changelog topic of an operator's store.
    pub fn changelog(&self, operator: &str, store: &str) -> String {
        changelog_topic(&self.scope, operator, store)
    }

    /// The store whose changelog `topic` is, among the operators `ids`.
    pub fn changelog_store<'a>(&self, ids: &[&'a str], topic: &str) -> Option<(&'a str, String)> {
        changelog_store(&self.scope, ids, topic)
    }

    /// The topic a shared pipeline repartitions through before operator `id`.
    pub fn repartition(&self, id: &str) -> String {
        format!("{}.{id}.repartition", self.scope)
    }

    /// The consumer group whose offsets are the pipeline's source positions.
    pub fn group(&self) -> String {
        format!("eddy.{}", self.scope)
    }

    /// The transactional id of a task: stable across restarts, so a new producer fences
    /// the one a crashed process left behind.
    pub fn transactional_id(&self, stage: u32, partition: u32) -> String {
        format!("eddy.{}.{stage}.{partition}", self.scope)
    }
}

/// A pipeline's stages, with the topics between them where they live: in Kafka under
/// the pipeline's names when it repartitions there (see
/// [`PipelineRecord::repartitions_in_kafka`]), in the embedded log otherwise.
pub fn stages_of(record: &PipelineRecord) -> Vec<Stage> {
    if !record.repartitions_in_kafka() {
        return stages(&record.spec);
    }
    let names = KafkaNames::of(record);
    stages_through(&record.spec, |id| names.repartition(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_s_pipeline_carries_the_cluster_s_name_in_every_name() {
        let names = KafkaNames::new(Some("blue"), "wc");
        assert_eq!(names.positions(), "blue.wc.positions");
        assert_eq!(
            names.changelog("wordcount", "counts"),
            "blue.wc.wordcount.counts.changelog"
        );
        assert_eq!(names.group(), "eddy.blue.wc");
        assert_eq!(names.transactional_id(1, 3), "eddy.blue.wc.1.3");
        assert_eq!(
            names.repartition("wordcount"),
            "blue.wc.wordcount.repartition"
        );
        let other = KafkaNames::new(Some("green"), "wc");
        assert_ne!(names.positions(), other.positions());
        assert_ne!(names.group(), other.group());
        assert_eq!(
            names.changelog_store(&["wordcount"], "blue.wc.wordcount.counts.changelog"),
            Some(("wordcount", "counts".to_string()))
        );
        assert_eq!(
            other.changelog_store(&["wordcount"], "blue.wc.wordcount.counts.changelog"),
            None
        );
    }

    #[test]
    fn a_record_made_before_names_carried_a_namespace_keeps_its_names() {
        let names = KafkaNames::new(None, "wc");
        assert_eq!(names.positions(), "wc.positions");
        assert_eq!(
            names.changelog("wordcount", "counts"),
            "wc.wordcount.counts.changelog"
        );
        assert_eq!(names.group(), "eddy.wc");
        assert_eq!(names.transactional_id(0, 2), "eddy.wc.0.2");
    }
}
