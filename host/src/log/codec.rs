//! How records of embedded topics are stored: one RocksDB value per record.
//!
//! ```text
//! u8 version=1 | i64 timestamp | i64 append-time-ms | u32 key-len (u32::MAX: none) | key
//! | u32 value-len | value | u16 header-count | (u16 name-len | name | u32 len | value)*
//! ```
//! All integers big-endian.

use crate::record::Record;
use crate::record::batch::{self, EventBatch};

const VERSION: u8 = 1;
const NO_KEY: u32 = u32::MAX;

/// A stored value that does not decode.
#[derive(Debug, thiserror::Error)]
#[error("corrupt log record: {0}")]
pub struct CodecError(pub &'static str);

/// Encodes one record (from its parts, so flat batches need no `Record` in between).
pub fn encode(
    key: Option<&[u8]>,
    value: &[u8],
    timestamp: i64,
    headers: &[(&[u8], &[u8])],
    append_ms: i64,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(31 + key.map_or(0, <[u8]>::len) + value.len());
    encode_into(&mut out, key, value, timestamp, headers, append_ms);
    out
}

/// Appends one encoded record to `out`.
pub fn encode_into(
    out: &mut Vec<u8>,
    key: Option<&[u8]>,
    value: &[u8],
    timestamp: i64,
    headers: &[(&[u8], &[u8])],
    append_ms: i64,
) {
    out.push(VERSION);
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&append_ms.to_be_bytes());
    match key {
        Some(k) => {
            out.extend_from_slice(&(k.len() as u32).to_be_bytes());
            out.extend_from_slice(k);
        }
        None => out.extend_from_slice(&NO_KEY.to_be_bytes()),
    }
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(&(headers.len() as u16).to_be_bytes());
    for (name, v) in headers {
        out.extend_from_slice(&(name.len() as u16).to_be_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&(v.len() as u32).to_be_bytes());
        out.extend_from_slice(v);
    }
}

/// Encodes a [`Record`].
pub fn encode_record(r: &Record, append_ms: i64) -> Vec<u8> {
    let headers: Vec<(&[u8], &[u8])> = r
        .headers
        .iter()
        .map(|(n, v)| (n.as_bytes(), v.as_slice()))
        .collect();
    encode(r.key.as_deref(), &r.value, r.timestamp, &headers, append_ms)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let (head, tail) = self.0.split_at_checked(n).ok_or(CodecError("truncated"))?;
        self.0 = tail;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

/// A stored record, borrowing the stored bytes.
pub struct Decoded<'a> {
    pub timestamp: i64,
    pub append_ms: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub headers: Vec<(&'a [u8], &'a [u8])>,
}

pub fn decode(bytes: &[u8]) -> Result<Decoded<'_>, CodecError> {
    let mut r = Reader(bytes);
    if r.take(1)? != [VERSION] {
        return Err(CodecError("unknown version"));
    }
    let timestamp = r.i64()?;
    let append_ms = r.i64()?;
    let key = match r.u32()? {
        NO_KEY => None,
        n => Some(r.take(n as usize)?),
    };
    let n = r.u32()? as usize;
    let value = r.take(n)?;
    let count = r.u16()?;
    let mut headers = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let n = r.u16()? as usize;
        let name = r.take(n)?;
        let n = r.u32()? as usize;
        headers.push((name, r.take(n)?));
    }
    Ok(Decoded {
        timestamp,
        append_ms,
        key,
        value,
        headers,
    })
}

impl Decoded<'_> {
    pub fn to_record(&self) -> Record {
        Record {
            key: self.key.map(<[u8]>::to_vec),
            value: self.value.to_vec(),
            timestamp: self.timestamp,
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (String::from_utf8_lossy(n).into_owned(), v.to_vec()))
                .collect(),
        }
    }

    /// Appends the record to a flat batch (no intermediate `Record`).
    pub fn push_to(&self, batch: &mut EventBatch) {
        if self.headers.is_empty() {
            batch::push(batch, self.key, self.value, self.timestamp, &[]);
        } else {
            batch::push_record(batch, &self.to_record());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let r = Record {
            key: Some(b"k".to_vec()),
            value: b"v".to_vec(),
            timestamp: -5,
            headers: vec![("h".into(), vec![0, 1])],
        };
        let bytes = encode_record(&r, 99);
        let d = decode(&bytes).unwrap();
        assert_eq!(d.append_ms, 99);
        assert_eq!(d.to_record(), r);
        let keyless = Record { key: None, ..r };
        assert_eq!(
            decode(&encode_record(&keyless, 0)).unwrap().to_record(),
            keyless
        );
    }

    #[test]
    fn truncated_values_are_errors_not_panics() {
        let bytes = encode_record(
            &Record {
                key: Some(b"key".to_vec()),
                value: b"value".to_vec(),
                ..Record::default()
            },
            0,
        );
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
