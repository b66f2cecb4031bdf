//! A shadow run as the pipeline's record keeps it: which version runs beside the live
//! one, until when, and how it ended.

use super::pipeline::PinnedOperator;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Where a shadow run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ShadowState {
    /// It runs beside the live version (while the pipeline runs).
    Running,
    /// It compared what it was asked to (`records` or `for`); its report stays.
    Finished,
    /// It stopped on its own (`reason` says why); its report stays.
    Dropped,
}

/// How long a shadow runs: until it compared `records` inputs, or for `for_ms`, or both
/// (whichever comes first); neither: until promoted or discarded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShadowLimits {
    pub records: Option<u64>,
    pub for_ms: Option<u64>,
}

/// A shadow run of one operator of a pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ShadowRun {
    /// The version shadowed (its `id` is the operator's).
    pub operator: PinnedOperator,
    /// The version the live pipeline runs.
    pub live_version: u32,
    /// The shadow's config, when it is not the live operator's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    pub state: ShadowState,
    /// Inputs to compare before it finishes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    /// When it finishes (milliseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<i64>,
    pub started_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_ms: Option<i64>,
    /// Why it was dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ShadowRun {
    /// Records a running shadow as dropped for `reason` at `now_ms`; whether it ran.
    pub fn drop_running(run: &mut Option<ShadowRun>, reason: String, now_ms: i64) -> bool {
        match run.as_mut().filter(|s| s.state == ShadowState::Running) {
            Some(s) => {
                s.state = ShadowState::Dropped;
                s.reason = Some(reason);
                s.finished_ms = Some(now_ms);
                true
            }
            None => false,
        }
    }
}
