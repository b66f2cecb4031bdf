//! How a pipeline spec splits into stages: the operators between two repartitions, each
//! stage reading one topic and writing the next.

use super::{InputSpec, PipelineSpec};

/// The operators between two repartitions, with the topics they read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    pub index: u32,
    /// The topic whose partitions number the stage's tasks: the primary input's (the
    /// first stage), or the repartition topic before it.
    pub source: String,
    /// The first stage's inputs, the primary one first (`source` is its topic); empty
    /// for a stage after a repartition, which reads only `source`.
    pub inputs: Vec<InputSpec>,
    pub sink: String,
    /// Indices into the spec's operators.
    pub ops: Vec<usize>,
}

impl Stage {
    /// Whether the stage reads the pipeline's own source.
    pub fn is_first(&self) -> bool {
        self.index == 0
    }
}

/// The internal topic a pipeline repartitions through before operator `id`.
pub fn repartition_topic(pipeline: &str, id: &str) -> String {
    format!("{pipeline}.{id}.repartition")
}

/// Splits a pipeline at its repartitions.
pub fn stages(spec: &PipelineSpec) -> Vec<Stage> {
    stages_through(spec, |id| repartition_topic(&spec.name, id))
}

/// Splits a pipeline at its repartitions, `topic(id)` naming the repartition topic before
/// operator `id` (a shared pipeline's live in Kafka under its Kafka names).
pub fn stages_through(spec: &PipelineSpec, topic: impl Fn(&str) -> String) -> Vec<Stage> {
    let source = spec
        .primary_source()
        .map(|t| t.topic.clone())
        .unwrap_or_default();
    let sink = spec
        .sink
        .as_ref()
        .map(|t| t.topic.clone())
        .unwrap_or_default();
    let mut stages = Vec::new();
    let mut current = Stage {
        index: 0,
        source,
        inputs: spec.input_specs(),
        sink: String::new(),
        ops: Vec::new(),
    };
    for (i, op) in spec.operators.iter().enumerate() {
        if op.repartition {
            let topic = topic(op.id());
            current.sink = topic.clone();
            let index = current.index + 1;
            stages.push(std::mem::replace(
                &mut current,
                Stage {
                    index,
                    source: topic,
                    inputs: Vec::new(),
                    sink: String::new(),
                    ops: Vec::new(),
                },
            ));
        }
        current.ops.push(i);
    }
    current.sink = sink;
    stages.push(current);
    stages
}

/// The stage operator `i` of the spec runs in, and its place in the stage's chain.
pub fn stage_of(spec: &PipelineSpec, i: usize) -> Option<(Stage, usize)> {
    stages(spec)
        .into_iter()
        .find_map(|s| s.ops.iter().position(|x| *x == i).map(|local| (s, local)))
}

/// Every topic a pipeline reads or writes between its stages and at its ends.
pub fn stage_topics(spec: &PipelineSpec) -> Vec<String> {
    let mut topics: Vec<String> = stages(spec)
        .into_iter()
        .flat_map(|s| {
            let more: Vec<String> = s
                .inputs
                .iter()
                .skip(1)
                .map(|i| i.topic.topic.clone())
                .collect();
            [s.source, s.sink].into_iter().chain(more)
        })
        .collect();
    topics.dedup();
    topics
}
