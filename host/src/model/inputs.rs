//! A pipeline's inputs: `[[inputs]]` in the spec (several topics, each a stream, a table
//! or a broadcast input), or the one-input form `[source]`.
//!
//! ```toml
//! [[inputs]]
//! name = "orders"
//! topic = "orders"
//! [[inputs]]
//! name = "customers"
//! topic = "customers"
//! kind = "table"
//! ```

use super::spec::{SpecError, TopicRef, check_name};
use serde::{Deserialize, Serialize};

/// The name of the input of a pipeline written with `[source]` (and of `eddy run`'s
/// one `--input FILE`).
pub const SOURCE_INPUT: &str = "source";

/// One input of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "InputForm", into = "InputForm")]
pub struct InputSpec {
    /// What operators see as the input of its events (`event.input()`).
    pub name: String,
    pub topic: TopicRef,
    pub kind: InputKind,
    /// Read although not co-partitioned: every task reads every partition of the input
    /// and keeps the records whose key belongs to its partition (see `keeps`).
    pub repartition: bool,
}

/// How a task reads an input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Events; task `p` reads partition `p`, and the task's watermark waits for it.
    #[default]
    Stream,
    /// A changelog (latest value per key, a tombstone deletes): task `p` reads partition
    /// `p`, up to its end before any stream input when the task starts. Its timestamps
    /// are row versions, not the stream's clock: it does not hold the watermark back.
    Table,
    /// Read whole (every partition) by every task, up to its end first, like a table
    /// (small tables, rules).
    Broadcast,
}

impl InputKind {
    /// Its event times move the task's watermark.
    pub fn holds_watermark(self) -> bool {
        self == InputKind::Stream
    }
}

/// How an input is written in a spec: a topic reference with a name and a kind.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputForm {
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kafka: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "is_stream")]
    kind: InputKind,
    #[serde(default, skip_serializing_if = "is_false")]
    repartition: bool,
}

fn is_stream(kind: &InputKind) -> bool {
    *kind == InputKind::Stream
}

fn is_false(b: &bool) -> bool {
    !b
}

impl TryFrom<InputForm> for InputSpec {
    type Error = String;

    fn try_from(form: InputForm) -> Result<Self, String> {
        let mut reference = serde_json::Map::new();
        if let Some(t) = form.topic {
            reference.insert("topic".into(), t.into());
        }
        if let Some(k) = form.kafka {
            reference.insert("kafka".into(), k);
        }
        let topic: TopicRef = serde_json::from_value(reference.into())
            .map_err(|e| format!("input {:?}: {e}", form.name))?;
        Ok(InputSpec {
            name: form.name,
            topic,
            kind: form.kind,
            repartition: form.repartition,
        })
    }
}

impl From<InputSpec> for InputForm {
    fn from(i: InputSpec) -> Self {
        let reference = serde_json::to_value(&i.topic).expect("a topic reference serializes");
        InputForm {
            name: i.name,
            topic: reference["topic"].as_str().map(str::to_string),
            kafka: reference.get("kafka").cloned(),
            kind: i.kind,
            repartition: i.repartition,
        }
    }
}

/// Checks a spec's inputs: names, uniqueness, and that `[source]` is not also given.
pub(super) fn check_inputs(inputs: &[InputSpec], has_source: bool) -> Result<(), SpecError> {
    if inputs.is_empty() {
        return Ok(());
    }
    if has_source {
        return Err(SpecError::Invalid(
            "give either [source] (one input) or [[inputs]], not both".into(),
        ));
    }
    let mut names = std::collections::BTreeSet::new();
    let mut topics = std::collections::BTreeMap::new();
    for input in inputs {
        check_name("input", &input.name)?;
        check_name("topic", &input.topic.topic)?;
        if !names.insert(input.name.as_str()) {
            return Err(SpecError::Invalid(format!(
                "input {:?} appears twice; give each input a distinct `name`",
                input.name
            )));
        }
        // A task keeps one position per topic partition it reads.
        if let Some(other) = topics.insert(input.topic.topic.as_str(), input.name.as_str()) {
            return Err(SpecError::Invalid(format!(
                "inputs {other:?} and {:?} both read topic {:?}; give each input its own topic",
                input.name, input.topic.topic
            )));
        }
    }
    let Some(primary) = inputs.iter().find(|i| i.kind == InputKind::Stream) else {
        return Err(SpecError::Invalid(
            "a pipeline needs a stream input: its partitions number the tasks (one per partition), and tables and broadcast inputs join them".into(),
        ));
    };
    for input in inputs.iter().filter(|i| i.repartition) {
        if input.kind == InputKind::Broadcast {
            return Err(SpecError::Invalid(format!(
                "input {:?}: a broadcast input is read whole by every task; `repartition` applies to stream and table inputs",
                input.name
            )));
        }
        if input.name == primary.name {
            return Err(SpecError::Invalid(format!(
                "input {:?} numbers the pipeline's tasks (its first stream input), so it cannot be repartitioned; `repartition` applies to the other inputs",
                input.name
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::model::PipelineSpec;

    const TWO: &str = "name = \"p\"\n[[inputs]]\nname = \"orders\"\ntopic = \"orders\"\n[[inputs]]\nname = \"customers\"\ntopic = \"customers\"\nkind = \"table\"\nrepartition = true\n[[operators]]\nname = \"w\"\n";

    #[test]
    fn repartition_is_kept_and_applies_to_inputs_other_than_the_first_stream() {
        let spec = PipelineSpec::from_toml(TWO).unwrap();
        assert!(spec.inputs[1].repartition && !spec.inputs[0].repartition);
        let again: PipelineSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec, "the flag survives the JSON the server keeps");
        for (text, says) in [
            (
                TWO.replace("kind = \"table\"", "kind = \"broadcast\""),
                "a broadcast input is read whole",
            ),
            (
                TWO.replace(
                    "topic = \"orders\"\n",
                    "topic = \"orders\"\nrepartition = true\n",
                ),
                "numbers the pipeline's tasks",
            ),
        ] {
            let e = PipelineSpec::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }
}
