//! The pipeline spec, read from TOML (or JSON) by `eddy run` and the server alike.
//!
//! ```toml
//! name = "wordcount"
//! [source]
//! topic = "lines"
//! [sink]
//! topic = "counts"
//! [[operators]]
//! name = "wordcount"
//! path = "target/wasm32-wasip2/release/wordcount.wasm"   # eddy run
//! version = "latest"                                    # server
//! config = { lowercase = "true" }
//! [settings]
//! batch_size = 512
//! on_error = "fail"
//! ```

use super::inputs::{InputKind, InputSpec, SOURCE_INPUT, check_inputs};
pub use super::settings::{
    Bound, DurationText, LateEvents, MAX_DELAY_MS, OnError, OnProbationTimeout, SETTING_BOUNDS,
    STATE_CACHE_MB_MAX, Settings,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// Longest pipeline, operator, store or port name. Topics are derived from them
/// (`<pipeline>.<operator>.<store>.changelog`), and must stay within Kafka's limit.
pub const NAME_MAX: usize = 64;

/// Longest topic name (Kafka's limit).
pub const TOPIC_NAME_MAX: usize = 249;

/// A pipeline: a source, operators chained in order, a sink, and settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSpec {
    /// Names the pipeline, its state, and its derived topics (`<name>.dlq`, `<name>.<port>`).
    pub name: String,
    /// Where records come from (the server; `eddy run` reads `--input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<TopicRef>,
    /// Several inputs instead of one `source`: streams, tables and broadcast inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<InputSpec>,
    /// Where the last operator's main output goes (the server; `eddy run` writes `--output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<TopicRef>,
    /// The operators, in processing order; each one's main output feeds the next.
    pub operators: Vec<OperatorSpec>,
    /// Topics of the user's choosing for side-output ports (and `dlq`, the dead letters):
    /// `[outputs] alerts = { topic = "fraud-alerts" }`. A port not named here writes to
    /// `<pipeline>.<port>`. Its topic lives where the sink's does (embedded, or the
    /// sink's Kafka cluster).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outputs: BTreeMap<String, TopicRef>,
    /// Start from this savepoint's state and source offsets (server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_savepoint: Option<String>,
    #[serde(default)]
    pub settings: Settings,
}

/// A topic a pipeline reads or writes: `topic = "lines"` (embedded) or
/// `kafka = { topic = "lines", brokers = "host:9092", properties = { ... } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TopicRefForm", into = "TopicRefForm")]
pub struct TopicRef {
    pub topic: String,
    /// Set when the topic lives in Kafka.
    pub kafka: Option<KafkaEndpoint>,
}

/// Where a Kafka topic lives and how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaEndpoint {
    /// Bootstrap servers; the server's `--kafka-brokers` when absent.
    pub brokers: Option<String>,
    /// Extra librdkafka properties (security settings, say), for every client of the
    /// pipeline that talks to these brokers.
    pub properties: BTreeMap<String, String>,
}

impl TopicRef {
    pub fn embedded(topic: &str) -> Self {
        TopicRef {
            topic: topic.to_string(),
            kafka: None,
        }
    }

    pub fn is_kafka(&self) -> bool {
        self.kafka.is_some()
    }
}

/// How a topic reference is written in a spec.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicRefForm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kafka: Option<KafkaTopicForm>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KafkaTopicForm {
    topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    brokers: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        deserialize_with = "config_values"
    )]
    properties: BTreeMap<String, String>,
}

impl TryFrom<TopicRefForm> for TopicRef {
    type Error = String;

    fn try_from(form: TopicRefForm) -> Result<Self, String> {
        match (form.topic, form.kafka) {
            (Some(topic), None) => Ok(TopicRef { topic, kafka: None }),
            (None, Some(k)) => Ok(TopicRef {
                topic: k.topic,
                kafka: Some(KafkaEndpoint {
                    brokers: k.brokers,
                    properties: k.properties,
                }),
            }),
            (Some(_), Some(_)) => {
                Err("give either `topic` (embedded) or `kafka = { topic = ... }`, not both".into())
            }
            (None, None) => Err(
                "name the topic: `topic = \"name\"` (embedded) or `kafka = { topic = \"name\" }`"
                    .into(),
            ),
        }
    }
}

impl From<TopicRef> for TopicRefForm {
    fn from(t: TopicRef) -> Self {
        match t.kafka {
            None => TopicRefForm {
                topic: Some(t.topic),
                kafka: None,
            },
            Some(k) => TopicRefForm {
                topic: None,
                kafka: Some(KafkaTopicForm {
                    topic: t.topic,
                    brokers: k.brokers,
                    properties: k.properties,
                }),
            },
        }
    }
}

/// One operator of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    /// The operator's name in the registry.
    pub name: String,
    /// Identifies this position of the chain in state and metrics; defaults to `name`.
    /// Needed only when the same operator appears twice in one pipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A local `.wasm` file, for `eddy run` (relative to the pipeline file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The registry version, for the server: a number or `"latest"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionRef>,
    /// Redistribute records by key before this operator, so every record of a key reaches
    /// the same task (as Kafka Streams' `groupBy`). The records go through the internal
    /// topic `<pipeline>.<id>.repartition`; the operators from here on form the next
    /// stage, with one task per partition of that topic.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repartition: bool,
    /// Handed to the operator's `init`. Values may be strings, numbers or booleans, or
    /// arrays and tables (handed over as JSON text).
    #[serde(
        default,
        deserialize_with = "config_values",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub config: BTreeMap<String, String>,
}

impl OperatorSpec {
    /// The operator's identity within the pipeline.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or(&self.name)
    }

    /// The config as the `init` call takes it.
    pub fn config_pairs(&self) -> Vec<(String, String)> {
        self.config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// A registry version: a number, or the latest at the time the pipeline is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum VersionRef {
    Number(u32),
    Latest(LatestTag),
}

/// The literal `"latest"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatestTag {
    Latest,
}

/// A version is a whole number (`3`, also written `3.0` by JSON tools) or `"latest"`.
impl<'de> Deserialize<'de> for VersionRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Whole(u64),
            Real(f64),
            Text(String),
        }
        let bad = || {
            serde::de::Error::custom(
                "a version is a whole number from 0 to 4294967295 or \"latest\"",
            )
        };
        match Form::deserialize(d).map_err(|_| bad())? {
            Form::Whole(n) => u32::try_from(n).map(VersionRef::Number).map_err(|_| bad()),
            Form::Real(f) if f.fract() == 0.0 && (0.0..=u32::MAX as f64).contains(&f) => {
                Ok(VersionRef::Number(f as u32))
            }
            Form::Text(t) if t == "latest" => Ok(VersionRef::Latest(LatestTag::Latest)),
            _ => Err(bad()),
        }
    }
}

impl utoipa::PartialSchema for VersionRef {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, SchemaType, Type};
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::Integer))
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(SchemaType::Type(Type::String))
                    .enum_values(Some(["latest"])),
            )
            .description(Some("A registry version number, or \"latest\""))
            .into()
    }
}

impl utoipa::ToSchema for VersionRef {}

/// An operator's config as a request gives it: values may be strings, numbers or
/// booleans (kept as text, as `init` takes them), arrays or objects (as JSON text).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct OperatorConfig(
    #[serde(deserialize_with = "config_values")] pub BTreeMap<String, String>,
);

fn config_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = BTreeMap::<String, serde_json::Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(k, v)| config_text(&k, v).map(|v| (k, v)))
        .collect()
}

/// A config value as `init` takes it: strings as they are, numbers and booleans as
/// text, arrays and tables as JSON text (the SDKs' `list` and friends read them).
fn config_text<E: serde::de::Error>(key: &str, v: serde_json::Value) -> Result<String, E> {
    use serde_json::Value;
    Ok(match v {
        Value::String(s) => s,
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => i.to_string(),
            (_, Some(u), _) => u.to_string(),
            (_, _, Some(f)) => f.to_string(),
            _ => n.to_string(),
        },
        v @ (Value::Array(_) | Value::Object(_)) => v.to_string(),
        Value::Null => {
            return Err(E::custom(format!(
                "config {key:?} is null: give a string, number, boolean, array or table"
            )));
        }
    })
}

/// A spec that cannot run, and why.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("pipeline spec is not valid TOML: {0}")]
    Toml(String),
    #[error("pipeline spec is not valid JSON: {0}")]
    Json(String),
    #[error("pipeline spec: {0}")]
    Invalid(String),
}

/// Whether `name` may name a pipeline, operator, store, port (1 to 64) or topic (1 to
/// 249) : characters from `A-Z a-z 0-9 . _ -`, as Kafka allows in topic names.
pub fn check_name(what: &str, name: &str) -> Result<(), SpecError> {
    let max = if what == "topic" {
        TOPIC_NAME_MAX
    } else {
        NAME_MAX
    };
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    // Names become parts of file names and savepoint ids: no `.`, `..` or hidden names
    // (Kafka refuses the topics `.` and `..`, and allows others starting with a dot).
    let dotted = if what == "topic" {
        name == "." || name == ".."
    } else {
        name.starts_with('.')
    };
    if ok && !dotted {
        Ok(())
    } else if dotted {
        Err(SpecError::Invalid(format!(
            "{what} name {name:?} is invalid: it must not {}",
            if what == "topic" {
                "be . or .."
            } else {
                "start with a dot"
            }
        )))
    } else {
        Err(SpecError::Invalid(format!(
            "{what} name {name:?} is invalid: use 1 to {max} characters from A-Z a-z 0-9 . _ -"
        )))
    }
}

impl PipelineSpec {
    /// Reads a TOML spec and checks it.
    pub fn from_toml(text: &str) -> Result<Self, SpecError> {
        let spec: PipelineSpec =
            toml::from_str(text).map_err(|e| SpecError::Toml(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Reads a JSON spec and checks it.
    pub fn from_json(text: &str) -> Result<Self, SpecError> {
        let spec: PipelineSpec =
            serde_json::from_str(text).map_err(|e| SpecError::Json(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Checks what the schema cannot: names, uniqueness, ranges.
    pub fn validate(&self) -> Result<(), SpecError> {
        check_name("pipeline", &self.name)?;
        if self.operators.is_empty() {
            return Err(SpecError::Invalid(
                "add at least one [[operators]] entry".into(),
            ));
        }
        let mut ids = std::collections::BTreeSet::new();
        for op in &self.operators {
            check_name("operator", &op.name)?;
            check_name("operator id", op.id())?;
            if !ids.insert(op.id()) {
                return Err(SpecError::Invalid(format!(
                    "operator {:?} appears twice; give each occurrence a distinct `id`",
                    op.id()
                )));
            }
        }
        for topic in [&self.source, &self.sink].into_iter().flatten() {
            check_name("topic", &topic.topic)?;
        }
        check_inputs(&self.inputs, self.source.is_some())?;
        self.check_outputs()?;
        self.settings.validate()?;
        Ok(())
    }

    /// Named outputs: valid names, no reserved port, and each topic where the sink's is.
    fn check_outputs(&self) -> Result<(), SpecError> {
        for (port, to) in &self.outputs {
            check_name("port", port)?;
            check_name("topic", &to.topic)?;
            if port == SHADOW_PORT {
                return Err(SpecError::Invalid(format!(
                    "[outputs] {port}: the port {SHADOW_PORT:?} is reserved for shadow runs (<pipeline>.{SHADOW_PORT})"
                )));
            }
            if self
                .input_specs()
                .iter()
                .any(|i| i.topic.topic == to.topic && i.topic.is_kafka() == to.is_kafka())
            {
                return Err(SpecError::Invalid(format!(
                    "[outputs] {port}: topic {:?} is the pipeline's source; writing it would feed the pipeline its own outputs",
                    to.topic
                )));
            }
            if to.is_kafka() && self.operators.iter().any(|o| o.repartition) {
                // The stages before a repartition commit to the embedded log.
                return Err(SpecError::Invalid(format!(
                    "[outputs] {port}: a pipeline that repartitions writes its ports to the embedded log (its first stages commit there); name an embedded topic or leave the port out"
                )));
            }
            let Some(sink) = &self.sink else { continue };
            let same_place = match (&sink.kafka, &to.kafka) {
                (None, None) => true,
                (Some(s), Some(t)) => {
                    t.brokers
                        .as_ref()
                        .is_none_or(|b| Some(b) == s.brokers.as_ref())
                        && (t.properties.is_empty() || t.properties == s.properties)
                }
                _ => false,
            };
            if !same_place {
                let sink_place = if sink.is_kafka() {
                    "the sink's Kafka cluster: `{ kafka = { topic = \"...\" } }` without other brokers or properties"
                } else {
                    "the embedded log, as the sink: `{ topic = \"...\" }`"
                };
                return Err(SpecError::Invalid(format!(
                    "[outputs] {port}: a port's topic is written in the same commit as the sink's, so it must live in {sink_place}"
                )));
            }
        }
        Ok(())
    }

    /// The pipeline's inputs, the one that numbers the tasks first (the first stream
    /// input); `[source]` is one stream input named `source`.
    pub fn input_specs(&self) -> Vec<InputSpec> {
        if let Some(source) = &self.source {
            return vec![InputSpec {
                name: SOURCE_INPUT.to_string(),
                topic: source.clone(),
                kind: InputKind::Stream,
                repartition: false,
            }];
        }
        let mut inputs = self.inputs.clone();
        if let Some(i) = inputs.iter().position(|i| i.kind == InputKind::Stream) {
            let primary = inputs.remove(i);
            inputs.insert(0, primary);
        }
        inputs
    }

    /// The input whose partitions number the tasks: `[source]`, or the first stream of
    /// `[[inputs]]`.
    pub fn primary_source(&self) -> Option<&TopicRef> {
        self.source.as_ref().or_else(|| {
            self.inputs
                .iter()
                .find(|i| i.kind == InputKind::Stream)
                .map(|i| &i.topic)
        })
    }

    /// Whether the pipeline reads several inputs.
    pub fn has_inputs(&self) -> bool {
        !self.inputs.is_empty()
    }

    /// Every named output as port -> topic name.
    pub fn port_topics(&self) -> PortTopics {
        PortTopics {
            pipeline: self.name.clone(),
            named: self
                .outputs
                .iter()
                .map(|(p, t)| (p.clone(), t.topic.clone()))
                .collect(),
        }
    }
}

/// The port of a shadow run's records (`io::SHADOW_PORT`; the model sits below `io`).
const SHADOW_PORT: &str = "shadow";

/// Where each side-output port of a pipeline writes, as a sink needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PortTopics {
    pub pipeline: String,
    /// Ports the spec names under `[outputs]`, to their topics.
    pub named: BTreeMap<String, String>,
}

impl PortTopics {
    /// Only `<pipeline>.<port>` topics.
    pub fn derived(pipeline: &str) -> Self {
        PortTopics {
            pipeline: pipeline.to_string(),
            named: BTreeMap::new(),
        }
    }

    /// The topic of `port`.
    pub fn topic(&self, port: &str) -> String {
        match self.named.get(port) {
            Some(t) => t.clone(),
            None => format!("{}.{port}", self.pipeline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WORDCOUNT: &str = r#"
        name = "wordcount"
        [[operators]]
        name = "wordcount"
        path = "wordcount.wasm"
        config = { lowercase = true, n = 3 }
        [settings]
        batch_size = 64
        on_error = "dead-letter"
    "#;

    #[test]
    fn reads_the_documented_shape() {
        let spec = PipelineSpec::from_toml(WORDCOUNT).unwrap();
        assert_eq!(spec.operators[0].config["lowercase"], "true");
        assert_eq!(spec.operators[0].config["n"], "3");
        assert_eq!(spec.settings.batch_size, 64);
        assert_eq!(spec.settings.on_error, OnError::DeadLetter);
        assert_eq!(spec.settings.call_timeout_ms, 10_000);
    }

    #[test]
    fn config_arrays_and_tables_are_handed_over_as_json_text() {
        let spec = PipelineSpec::from_toml(
            "name = \"p\"\n[[operators]]\nname = \"op\"\nconfig = { pages = [\"home\", 7], limits = { max = 2.5 }, ratio = 5.0 }\n",
        )
        .unwrap();
        let c = &spec.operators[0].config;
        assert_eq!(c["pages"], r#"["home",7]"#);
        assert_eq!(c["limits"], r#"{"max":2.5}"#);
        assert_eq!(c["ratio"], "5", "a whole float reads as before");
        let json = r#"{"name": "p", "operators": [{"name": "op", "config": {"x": null}}]}"#;
        let e = PipelineSpec::from_json(json).unwrap_err().to_string();
        assert!(e.contains("\"x\" is null"), "{e}");
    }

    #[test]
    fn versions_are_numbers_or_latest() {
        let spec = PipelineSpec::from_json(r#"{"name":"p","operators":[{"name":"a","version":3},{"name":"b","version":"latest"}]}"#).unwrap();
        assert_eq!(spec.operators[0].version, Some(VersionRef::Number(3)));
        assert_eq!(
            spec.operators[1].version,
            Some(VersionRef::Latest(LatestTag::Latest))
        );
        assert!(
            PipelineSpec::from_json(
                r#"{"name":"p","operators":[{"name":"a","version":"newest"}]}"#
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_what_cannot_run_with_a_reason() {
        let unknown =
            PipelineSpec::from_toml("name = \"p\"\ncolour = 1\n[[operators]]\nname = \"a\"")
                .unwrap_err();
        assert!(
            unknown.to_string().contains("unknown field `colour`"),
            "{unknown}"
        );
        let none = PipelineSpec::from_toml("name = \"p\"\noperators = []").unwrap_err();
        assert!(none.to_string().contains("at least one"), "{none}");
        let twice = PipelineSpec::from_toml(
            "name = \"p\"\n[[operators]]\nname = \"a\"\n[[operators]]\nname = \"a\"",
        )
        .unwrap_err();
        assert!(twice.to_string().contains("distinct `id`"), "{twice}");
        let bad_name =
            PipelineSpec::from_toml("name = \"p q\"\n[[operators]]\nname = \"a\"").unwrap_err();
        assert!(bad_name.to_string().contains("invalid"), "{bad_name}");
        let policy = PipelineSpec::from_toml(
            "name = \"p\"\n[[operators]]\nname = \"a\"\n[settings]\non_error = \"retry\"",
        )
        .unwrap_err();
        assert!(policy.to_string().contains("retry"), "{policy}");
    }

    #[test]
    fn topics_are_embedded_or_in_kafka_with_brokers_and_properties() {
        let spec = PipelineSpec::from_toml(
            r#"
name = "p"
[source]
kafka = { topic = "lines", brokers = "k1:9092", properties = { "security.protocol" = "SASL_SSL", "fetch.min.bytes" = 1 } }
[sink]
topic = "out"
[[operators]]
name = "wordcount"
"#,
        )
        .unwrap();
        let source = spec.source.as_ref().unwrap();
        assert_eq!(source.topic, "lines");
        let k = source.kafka.as_ref().unwrap();
        assert_eq!(k.brokers.as_deref(), Some("k1:9092"));
        assert_eq!(k.properties["security.protocol"], "SASL_SSL");
        assert_eq!(k.properties["fetch.min.bytes"], "1");
        assert!(!spec.sink.as_ref().unwrap().is_kafka());
        // The stored form reads back the same.
        let again: PipelineSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);

        for (bad, says) in [
            (
                "[source]\ntopic = \"a\"\nkafka = { topic = \"b\" }",
                "not both",
            ),
            ("[source]\n", "name the topic"),
            (
                "[source]\nkafka = { topic = \"b\", group = \"g\" }",
                "unknown field",
            ),
        ] {
            let text = format!("name = \"p\"\n{bad}\n[[operators]]\nname = \"w\"\n");
            let e = PipelineSpec::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn named_outputs_map_ports_to_topics_where_the_sink_lives() {
        let spec = PipelineSpec::from_toml(
            r#"
name = "fraud"
[source]
kafka = { topic = "payments" }
[sink]
kafka = { topic = "scores", brokers = "k1:9092" }
[outputs]
alerts = { kafka = { topic = "fraud-alerts" } }
late = { kafka = { topic = "late-payments", brokers = "k1:9092" } }
[[operators]]
name = "detector"
"#,
        )
        .unwrap();
        let ports = spec.port_topics();
        assert_eq!(ports.topic("alerts"), "fraud-alerts");
        assert_eq!(ports.topic("late"), "late-payments");
        assert_eq!(ports.topic("audit"), "fraud.audit");
        let again: PipelineSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
        for (outputs, says) in [
            (
                "alerts = { kafka = { topic = \"a\", brokers = \"k2:9092\" } }",
                "same commit",
            ),
            ("alerts = { topic = \"a\" }", "sink's Kafka cluster"),
            (
                "alerts = { kafka = { topic = \"payments\" } }",
                "its own outputs",
            ),
            ("shadow = { kafka = { topic = \"a\" } }", "reserved"),
            ("\"a b\" = { kafka = { topic = \"a\" } }", "port name"),
        ] {
            let text = format!(
                "name = \"p\"\n[source]\nkafka = {{ topic = \"payments\" }}\n[sink]\nkafka = {{ topic = \"s\", brokers = \"k1:9092\" }}\n[outputs]\n{outputs}\n[[operators]]\nname = \"w\"\n"
            );
            let e = PipelineSpec::from_toml(&text).unwrap_err().to_string();
            assert!(e.contains(says), "{outputs}: {e}");
        }
    }

    #[test]
    fn a_pipeline_that_repartitions_writes_ports_to_the_embedded_log() {
        let text = "name = \"p\"\n[source]\nkafka = { topic = \"in\" }\n[sink]\nkafka = { topic = \"out\" }\n[outputs]\nalerts = { kafka = { topic = \"a\" } }\n[[operators]]\nname = \"w\"\n[[operators]]\nname = \"c\"\nrepartition = true\n";
        let e = PipelineSpec::from_toml(text).unwrap_err().to_string();
        assert!(e.contains("repartitions"), "{e}");
        let inputs = "name = \"p\"\n[[inputs]]\nname = \"a\"\ntopic = \"t\"\n[[inputs]]\nname = \"b\"\ntopic = \"t\"\nkind = \"table\"\n[[operators]]\nname = \"w\"\n";
        let e = PipelineSpec::from_toml(inputs).unwrap_err().to_string();
        assert!(e.contains("both read topic \"t\""), "{e}");
    }

    #[test]
    fn event_time_settings_read_durations_and_refuse_conflicts() {
        let base = "name = \"p\"\n[[operators]]\nname = \"w\"\n[settings]\n";
        let spec = PipelineSpec::from_toml(&format!(
            "{base}max_out_of_orderness = \"5s\"\nidle_timeout = \"1m\"\nlate_events = \"side-output\""
        ))
        .unwrap();
        assert_eq!(spec.settings.out_of_orderness_ms(), 5000);
        assert_eq!(
            spec.settings.idle_timeout,
            Some(DurationText(std::time::Duration::from_secs(60)))
        );
        assert_eq!(spec.settings.late_events, LateEvents::SideOutput);
        let again: PipelineSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec, "durations survive the JSON the server keeps");
        // The older name still works.
        let old = PipelineSpec::from_toml(&format!("{base}watermark_delay_ms = 250")).unwrap();
        assert_eq!(old.settings.out_of_orderness_ms(), 250);
        assert_eq!(old.settings.late_events, LateEvents::Process);
        for (bad, says) in [
            ("max_out_of_orderness = \"5 parsecs\"", "write it like"),
            ("idle_timeout = 30000", "\"30000ms\" for milliseconds"),
            (
                "max_out_of_orderness = \"5s\"\nwatermark_delay_ms = 5",
                "keep one",
            ),
            ("idle_timeout = \"0s\"", "above 0"),
            ("late_events = \"ignore\"", "unknown variant"),
        ] {
            let e = PipelineSpec::from_toml(&format!("{base}{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }
}
