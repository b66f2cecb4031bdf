//! Key layout. Each `(pipeline, operator, store)` is interned to a 4-byte id by the
//! catalog (see `catalog.rs`); keys start with that id and the partition, so one task's
//! store is one contiguous range and one store across partitions is another:
//!
//! ```text
//! state:  store-id:u32be partition:u32be user-key
//! timers: timers-id:u32be partition:u32be (at ^ i64::MIN):u64be timer-key
//! meta:   "pos" name(pipeline) partition:u32be -> TaskPosition
//!         "catalog/" name(pipeline) name(operator) name(store) -> id:u32be
//! ```
//! (`name` is one length byte and the bytes.) Export, delete and restore work by range.

/// Longest name (pipeline, operator, store) a key can hold.
pub const NAME_MAX: usize = 255;

/// Appends one length-prefixed name. Callers validate lengths up front; a longer name
/// here is a bug.
pub fn push_name(key: &mut Vec<u8>, name: &str) {
    assert!(
        name.len() <= NAME_MAX,
        "name longer than {NAME_MAX} bytes reached the key layout"
    );
    key.push(name.len() as u8);
    key.extend_from_slice(name.as_bytes());
}

/// The prefix of every key of one store (or timer set) of one task.
pub fn task_prefix(id: u32, partition: u32) -> Vec<u8> {
    let mut key = Vec::with_capacity(8);
    key.extend_from_slice(&id.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The prefix of every key of one store, all partitions.
pub fn store_prefix(id: u32) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

/// Big-endian, sign-flipped: byte order equals numeric order for every i64.
pub fn ordered_i64(at: i64) -> [u8; 8] {
    ((at as u64) ^ (1 << 63)).to_be_bytes()
}

/// Inverse of [`ordered_i64`].
pub fn from_ordered_i64(bytes: [u8; 8]) -> i64 {
    (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64
}

/// The key of one timer.
pub fn timer_key(prefix: &[u8], at: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + 8 + key.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(&ordered_i64(at));
    k.extend_from_slice(key);
    k
}

/// The meta key of a task's position.
pub fn position_key(pipeline: &str, stage: u32, partition: u32) -> Vec<u8> {
    let mut key = positions_prefix(pipeline);
    key.extend_from_slice(&stage.to_be_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

/// The prefix of every position key of a pipeline.
pub fn positions_prefix(pipeline: &str) -> Vec<u8> {
    let mut key = b"pos".to_vec();
    push_name(&mut key, pipeline);
    key
}

/// The meta key of the state format (`state-version`) an operator's state was last
/// written in, where no pipeline record keeps it (`eddy run --state-dir`).
pub fn state_version_key(pipeline: &str, operator: &str) -> Vec<u8> {
    let mut key = b"state-version".to_vec();
    push_name(&mut key, pipeline);
    push_name(&mut key, operator);
    key
}

/// The smallest key greater than every key that starts with `prefix`; `None` when no
/// such key exists (the prefix is all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn task_prefixes_nest_in_store_prefixes() {
        let p = task_prefix(7, 3);
        assert!(p.starts_with(&store_prefix(7)));
        assert!(!task_prefix(7, 4).starts_with(&p));
        assert!(task_prefix(7, u32::MAX) < store_prefix(8));
    }

    #[test]
    fn prefix_end_bounds_the_range() {
        assert_eq!(prefix_end(&[1, 2]), Some(vec![1, 3]));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
    }

    proptest! {
        #[test]
        fn ordered_i64_orders_like_numbers(a: i64, b: i64) {
            prop_assert_eq!(a.cmp(&b), ordered_i64(a).cmp(&ordered_i64(b)));
            prop_assert_eq!(from_ordered_i64(ordered_i64(a)), a);
        }
    }
}
