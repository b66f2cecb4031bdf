//! Independent expectations for word-count pipelines.

use eddy_host::log::Log;
use eddy_host::record::Record;
use eddy_host::state::{Db, DbOptions};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// Lines of text, deterministic for a seed: 3-12 words from a small vocabulary with
/// mixed case and punctuation.
pub fn lines(count: usize, seed: u64) -> Vec<String> {
    use rand::{Rng, SeedableRng};
    const VOCAB: &[&str] = &[
        "the", "cat", "sat", "on", "a", "mat", "The", "Dog!", "ran,", "far", "away.", "stream",
        "state", "eddy",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let n = rng.random_range(3..12);
            let words: Vec<&str> = (0..n)
                .map(|_| VOCAB[rng.random_range(0..VOCAB.len())])
                .collect();
            words.join(" ")
        })
        .collect()
}

/// The words of a line as examples/wordcount defines them, lowercased.
pub fn words(text: &str) -> Vec<String> {
    text.split_ascii_whitespace()
        .map(|w| w.trim_matches(|c: char| c.is_ascii_punctuation()))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Every record of a topic in a stopped server's data dir: `(partition, offset, record)`.
pub fn read_topic(data_dir: &Path, topic: &str) -> Vec<(u32, u64, Record)> {
    let db = Arc::new(Db::open(&data_dir.join("db"), &DbOptions::default()).unwrap());
    let log = Log::open(db).unwrap();
    let t = log.topic(topic).unwrap();
    let mut out = Vec::new();
    for p in 0..t.partition_count() {
        for (offset, r, _) in log.read(&t, p, 0, usize::MAX).unwrap() {
            out.push((p, offset, r));
        }
    }
    out
}

/// What a word count of each source partition (counted separately, as each task does)
/// emits, as sorted `(word, count)` pairs.
pub fn expected_counts(source: &[(u32, u64, Record)]) -> Vec<(String, u64)> {
    let mut per_partition: HashMap<(u32, String), u64> = HashMap::new();
    let mut out = Vec::new();
    let mut ordered: Vec<&(u32, u64, Record)> = source.iter().collect();
    ordered.sort_by_key(|(p, o, _)| (*p, *o));
    for (p, _, r) in ordered {
        for w in words(&String::from_utf8_lossy(&r.value)) {
            let n = per_partition.entry((*p, w.clone())).or_default();
            *n += 1;
            out.push((w, *n));
        }
    }
    out.sort();
    out
}

/// What a word count over the whole source (repartitioned by word) emits, as sorted
/// `(word, count)` pairs: each word counted 1, 2, ... up to its total.
pub fn expected_global_counts(source: &[(u32, u64, Record)]) -> Vec<(String, u64)> {
    let mut totals: HashMap<String, u64> = HashMap::new();
    for (_, _, r) in source {
        for w in words(&String::from_utf8_lossy(&r.value)) {
            *totals.entry(w).or_default() += 1;
        }
    }
    let mut out: Vec<(String, u64)> = totals
        .into_iter()
        .flat_map(|(w, n)| (1..=n).map(move |i| (w.clone(), i)))
        .collect();
    out.sort();
    out
}

/// The `(key, count)` pairs of a word-count output topic, sorted.
pub fn actual_counts(sink: &[(u32, u64, Record)]) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = sink
        .iter()
        .map(|(_, _, r)| {
            let key = String::from_utf8(r.key.clone().expect("counts are keyed")).unwrap();
            (
                key,
                String::from_utf8_lossy(&r.value)
                    .parse()
                    .expect("counts are numbers"),
            )
        })
        .collect();
    out.sort();
    out
}
