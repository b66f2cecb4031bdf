//! Prometheus metrics of a server: per task events, errors, lag, late events, watermark,
//! timers and batch latency; per pipeline state size; pipelines by state; the memory
//! budget and its use; changelog offsets restored from Kafka.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    events_in: IntCounterVec,
    events_out: IntCounterVec,
    errors: IntCounterVec,
    lag: IntGaugeVec,
    late: IntCounterVec,
    watermark: IntGaugeVec,
    timers: IntGaugeVec,
    batch_seconds: HistogramVec,
    pub state_bytes: IntGaugeVec,
    pub pipelines: IntGaugeVec,
    /// The server's memory budget and its use, by `part`.
    pub memory: IntGaugeVec,
    pub shadow: IntGaugeVec,
    /// Changelog offsets restored from Kafka, by pipeline.
    pub restored: IntCounterVec,
}

/// The metric handles of one task.
#[derive(Clone)]
pub struct TaskMetrics {
    pub events_in: IntCounter,
    pub events_out: IntCounter,
    pub errors: IntCounter,
    pub lag: IntGauge,
    pub batch_seconds: Histogram,
    pub late: IntCounter,
    pub watermark: IntGauge,
    pub timers: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let task = ["pipeline", "partition"];
        let events_in = IntCounterVec::new(
            Opts::new("eddy_events_in_total", "Records read by a task"),
            &task,
        )
        .expect("valid metric");
        let events_out = IntCounterVec::new(
            Opts::new("eddy_events_out_total", "Records a task wrote to its sink"),
            &task,
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "eddy_errors_total",
                "Records (or timers) an operator failed on",
            ),
            &task,
        )
        .expect("valid metric");
        let lag = IntGaugeVec::new(
            Opts::new(
                "eddy_lag_records",
                "Records in the source partition not yet committed",
            ),
            &task,
        )
        .expect("valid metric");
        let late = IntCounterVec::new(
            Opts::new(
                "eddy_late_events_total",
                "Events below the watermark, dropped or set aside (late_events)",
            ),
            &task,
        )
        .expect("valid metric");
        let watermark = IntGaugeVec::new(
            Opts::new(
                "eddy_watermark_ms",
                "A task's event-time watermark, in milliseconds since the epoch",
            ),
            &task,
        )
        .expect("valid metric");
        let timers = IntGaugeVec::new(
            Opts::new("eddy_timers", "Committed event-time timers waiting to fire"),
            &task,
        )
        .expect("valid metric");
        let batch_seconds = HistogramVec::new(
            HistogramOpts::new(
                "eddy_batch_duration_seconds",
                "Time to process one batch through the operator chain",
            )
            .buckets(prometheus::exponential_buckets(0.0001, 2.0, 16).expect("valid buckets")),
            &["pipeline"],
        )
        .expect("valid metric");
        let state_bytes = IntGaugeVec::new(
            Opts::new("eddy_state_bytes", "Approximate size of a pipeline's state"),
            &["pipeline"],
        )
        .expect("valid metric");
        let pipelines = IntGaugeVec::new(
            Opts::new("eddy_pipelines", "Pipelines by state"),
            &["state"],
        )
        .expect("valid metric");
        let memory = IntGaugeVec::new(
            Opts::new(
                "eddy_memory_bytes",
                "The memory budget (part=budget) and its use: part=rocksdb_limit, rocksdb, wasm, state",
            ),
            &["part"],
        )
        .expect("valid metric");
        let restored = IntCounterVec::new(
            Opts::new(
                "eddy_restored_changelog_offsets_total",
                "Changelog offsets a task covered restoring its state from Kafka before it ran",
            ),
            &["pipeline"],
        )
        .expect("valid metric");
        for c in [&events_in, &events_out, &errors, &late, &restored] {
            registry
                .register(Box::new(c.clone()))
                .expect("metric names are unique");
        }
        for g in [&lag, &watermark, &timers] {
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
        }
        registry
            .register(Box::new(batch_seconds.clone()))
            .expect("metric names are unique");
        registry
            .register(Box::new(state_bytes.clone()))
            .expect("metric names are unique");
        let shadow = IntGaugeVec::new(
            Opts::new(
                "eddy_shadow_inputs",
                "A running shadow run's inputs by how the versions compared (outcome=compared, same, different, only_live, only_shadow, errors; committed)",
            ),
            &["pipeline", "outcome"],
        )
        .expect("valid metric");
        for g in [&pipelines, &memory, &shadow] {
            registry
                .register(Box::new(g.clone()))
                .expect("metric names are unique");
        }
        Metrics {
            registry,
            events_in,
            events_out,
            errors,
            lag,
            late,
            watermark,
            timers,
            batch_seconds,
            state_bytes,
            pipelines,
            memory,
            shadow,
            restored,
        }
    }

    /// The handles of one task.
    pub fn task(&self, pipeline: &str, partition: u32) -> TaskMetrics {
        let p = partition.to_string();
        let labels = [pipeline, p.as_str()];
        TaskMetrics {
            events_in: self.events_in.with_label_values(&labels),
            events_out: self.events_out.with_label_values(&labels),
            errors: self.errors.with_label_values(&labels),
            lag: self.lag.with_label_values(&labels),
            late: self.late.with_label_values(&labels),
            watermark: self.watermark.with_label_values(&labels),
            timers: self.timers.with_label_values(&labels),
            batch_seconds: self.batch_seconds.with_label_values(&[pipeline]),
        }
    }

    /// Forgets a deleted pipeline's series.
    pub fn remove_pipeline(&self, pipeline: &str, partitions: u32) {
        for p in 0..partitions {
            let p = p.to_string();
            for v in [&self.events_in, &self.events_out, &self.errors, &self.late] {
                let _ = v.remove_label_values(&[pipeline, &p]);
            }
            for g in [&self.lag, &self.watermark, &self.timers] {
                let _ = g.remove_label_values(&[pipeline, &p]);
            }
        }
        let _ = self.batch_seconds.remove_label_values(&[pipeline]);
        let _ = self.state_bytes.remove_label_values(&[pipeline]);
    }

    /// Everything, in Prometheus' text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}
