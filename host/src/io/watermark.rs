//! Watermark records: how a task writing to a repartition topic tells the next stage's
//! tasks how far it has come (see `task/upstream.rs` for how they are combined).

use crate::record::Record;
use crate::record::batch::{self, EventBatch};

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
}
