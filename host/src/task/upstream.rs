//! Watermarks across a repartition. A task whose sink is a repartition topic appends a
//! watermark record to every partition of it when its watermark has moved, in the same
//! commit as its outputs. A later stage's task keeps the last watermark of each upstream
//! task and takes the lowest as its own, as Flink does: an upstream partition that lags
//! holds the stage back instead of having its records turn late downstream.

use super::batch;
use crate::record::Record;
use crate::runtime::bindings::EventBatch;

/// The header that marks a watermark record; its value is `<upstream partition>:<watermark>`.
/// Headers named `eddy.*` are the host's.
pub const WATERMARK_HEADER: &str = "eddy.watermark";

/// The watermark record upstream task `partition` appends to each repartition partition.
pub fn watermark_record(partition: u32, watermark: i64) -> Record {
    Record {
        key: None,
        value: Vec::new(),
        timestamp: watermark,
        headers: vec![(
            WATERMARK_HEADER.to_string(),
            format!("{partition}:{watermark}").into_bytes(),
        )],
    }
}

/// Event `i` of `events` as a watermark record: `(upstream partition, watermark)`.
pub fn read_watermark(events: &EventBatch, i: usize) -> Option<(u32, i64)> {
    let meta = &events.events[i];
    // Cheap checks first: most records have a key or a value.
    if meta.headers_len != 1 || meta.value.len != 0 {
        return None;
    }
    let (key, _, _, headers) = batch::parts(events, i);
    let (name, value) = headers.first()?;
    if key.is_some() || *name != WATERMARK_HEADER.as_bytes() {
        return None;
    }
    let (p, w) = std::str::from_utf8(value).ok()?.split_once(':')?;
    Some((p.parse().ok()?, w.parse().ok()?))
}

/// The last watermark of each upstream task (`i64::MIN` before its first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamWatermarks(Vec<i64>);

impl UpstreamWatermarks {
    pub fn new(partitions: u32) -> Self {
        UpstreamWatermarks(vec![i64::MIN; partitions as usize])
    }

    /// Watermarks as saved, fitted to `partitions` upstream tasks.
    pub fn from_saved(mut saved: Vec<i64>, partitions: u32) -> Self {
        saved.resize(partitions as usize, i64::MIN);
        UpstreamWatermarks(saved)
    }

    pub fn as_slice(&self) -> &[i64] {
        &self.0
    }

    /// Takes upstream task `partition`'s watermark (a watermark never moves back; a
    /// partition this stage does not know is ignored).
    pub fn update(&mut self, partition: u32, watermark: i64) {
        if let Some(w) = self.0.get_mut(partition as usize) {
            *w = (*w).max(watermark);
        }
    }

    /// The lowest upstream watermark: how far the whole stage upstream has come.
    pub fn low(&self) -> i64 {
        self.0.iter().copied().min().unwrap_or(i64::MIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_watermark_record_reads_back_and_other_records_do_not_read_as_one() {
        let mut events = batch::empty();
        batch::push_record(&mut events, &watermark_record(3, -42));
        batch::push_record(&mut events, &watermark_record(0, i64::MAX));
        let user = |key: Option<&[u8]>, value: &[u8], header: &str| Record {
            key: key.map(<[u8]>::to_vec),
            value: value.to_vec(),
            timestamp: 0,
            headers: vec![(header.to_string(), b"1:5".to_vec())],
        };
        for r in [
            user(Some(b"k"), b"", WATERMARK_HEADER),
            user(None, b"v", WATERMARK_HEADER),
            user(None, b"", "other"),
            Record {
                key: None,
                value: Vec::new(),
                timestamp: 0,
                headers: vec![(WATERMARK_HEADER.to_string(), b"garbage".to_vec())],
            },
        ] {
            batch::push_record(&mut events, &r);
        }
        let read: Vec<_> = (0..events.events.len())
            .map(|i| read_watermark(&events, i))
            .collect();
        assert_eq!(
            read,
            [Some((3, -42)), Some((0, i64::MAX)), None, None, None, None]
        );
    }

    #[test]
    fn the_stage_watermark_is_the_lowest_upstream_one_and_never_moves_back() {
        let mut w = UpstreamWatermarks::new(3);
        assert_eq!(w.low(), i64::MIN);
        w.update(0, 100);
        w.update(1, 50);
        assert_eq!(w.low(), i64::MIN, "partition 2 has not reported");
        w.update(2, 70);
        assert_eq!(w.low(), 50);
        w.update(1, 10);
        assert_eq!(w.low(), 50, "a watermark does not move back");
        w.update(7, 0);
        assert_eq!(w.as_slice(), [100, 50, 70]);
        let saved = UpstreamWatermarks::from_saved(vec![5], 2);
        assert_eq!(saved.as_slice(), [5, i64::MIN]);
    }
}
