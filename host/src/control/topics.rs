//! The topics a pipeline reads, writes and owns.

use crate::log::{Log, changelog_topics};
use crate::model::topology::stage_topics;
use crate::model::{PipelineSpec, stages};

/// The topics a pipeline owns: repartition and changelog topics.
pub(super) fn internal_topics(log: &Log, spec: &PipelineSpec) -> Vec<String> {
    let ids: Vec<&str> = spec.operators.iter().map(|o| o.id()).collect();
    let mut topics: Vec<String> = stages(spec).into_iter().skip(1).map(|s| s.source).collect();
    topics.extend(
        changelog_topics(log, &spec.name, &ids)
            .into_iter()
            .map(|(_, _, t)| t.name().to_string()),
    );
    topics
}

/// Every topic a pipeline reads or writes, internal ones included.
pub(super) fn all_topics(log: &Log, spec: &PipelineSpec) -> Vec<String> {
    let mut topics = stage_topics(spec);
    topics.extend(internal_topics(log, spec));
    topics.extend(spec.outputs.values().map(|t| t.topic.clone()));
    topics
}
