//! Ordered scans over one store: RocksDB merged with what is not committed yet (the dirty
//! cache and the batch overlay), so a scan sees every write and delete so far.

use super::store::StoreState;
use super::{Cf, Db, StateError, keys};
use rocksdb::ReadOptions;

/// Largest page a scan returns, whatever the caller asks for.
pub const SCAN_LIMIT_MAX: usize = 10_000;

/// One page of a scan.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
    /// The key to resume from, when more entries remain.
    pub continuation: Option<Vec<u8>>,
}

pub(crate) fn scan(
    db: &Db,
    store: &StoreState,
    start: &[u8],
    end: Option<&[u8]>,
    limit: usize,
    max_bytes: usize,
    continuation: Option<&[u8]>,
) -> Result<ScanPage, StateError> {
    let limit = limit.clamp(1, SCAN_LIMIT_MAX);
    let mut bytes = 0usize;
    let from = match continuation {
        Some(c) if c > start => c,
        _ => start,
    };
    let overlay = store.pending_range(from, end);
    let prefix = &store.prefix;
    let with_prefix = |k: &[u8]| [prefix.as_slice(), k].concat();
    let mut ro = ReadOptions::default();
    ro.set_iterate_upper_bound(match end {
        Some(e) => with_prefix(e),
        None => keys::prefix_end(prefix).expect("store prefixes are never all 0xff"),
    });
    let mut it = db.rocks().raw_iterator_cf_opt(db.cf(Cf::State), ro);
    it.seek(with_prefix(from));

    let mut page = ScanPage::default();
    let mut ov = overlay.into_iter().peekable();
    loop {
        it.status()?;
        let committed = it.key().map(|k| k[prefix.len()..].to_vec());
        let pending = ov.peek().map(|(k, _)| *k);
        let (key, value): (Vec<u8>, Option<Vec<u8>>) = match (committed, pending) {
            (None, None) => break,
            (Some(k), p) if p.is_none_or(|p| k.as_slice() < p) => {
                let v = it.value().map(<[u8]>::to_vec);
                it.next();
                if store.hidden_in_db(&k) {
                    continue;
                }
                (k, v)
            }
            (c, Some(_)) => {
                let (k, v) = ov.next().expect("peeked");
                if c.as_deref() == Some(k) {
                    it.next(); // the pending entry shadows the committed one
                }
                (k.to_vec(), v.map(<[u8]>::to_vec))
            }
            (Some(_), None) => unreachable!("handled by the committed arm"),
        };
        let Some(value) = value else { continue };
        // A page holds at least one entry, however large.
        let size = key.len() + value.len();
        if page.entries.len() == limit
            || (!page.entries.is_empty() && bytes.saturating_add(size) > max_bytes)
        {
            page.continuation = Some(key);
            break;
        }
        bytes += size;
        page.entries.push((key, value));
    }
    Ok(page)
}
