//! Output batches as a shadow compares and forwards them: equality without decoding,
//! concatenation of per-record outputs, and records for the shadow's topic.

use crate::record::Record;
use crate::record::batch::{self, EventBatch, HeaderMeta, OutputBatch, OutputMeta, Span};

/// The header naming the side-output port of a shadow's record (its topic holds the
/// main and side outputs of the shadow together).
pub const PORT_HEADER: &str = "eddy.port";

fn headers<'a>(out: &'a OutputBatch, o: &OutputMeta) -> &'a [HeaderMeta] {
    &out.headers[o.event.headers_start as usize..][..o.event.headers_len as usize]
}

/// Whether two checked output batches hold the same records in the same order.
pub fn same_outputs(a: &OutputBatch, b: &OutputBatch) -> bool {
    a.outputs.len() == b.outputs.len()
        && a.outputs.iter().zip(&b.outputs).all(|(x, y)| {
            let (ex, ey) = (&x.event, &y.event);
            ex.timestamp == ey.timestamp
                && ex.key.get(&a.data) == ey.key.get(&b.data)
                && ex.value.get(&a.data) == ey.value.get(&b.data)
                && x.port.get(&a.data) == y.port.get(&b.data)
                && headers(a, x).len() == headers(b, y).len()
                && headers(a, x).iter().zip(headers(b, y)).all(|(h, g)| {
                    h.name.get(&a.data) == g.name.get(&b.data)
                        && h.value.get(&a.data) == g.value.get(&b.data)
                })
        })
}

/// The batches one after the other, as one batch.
pub fn concat(parts: &[OutputBatch]) -> OutputBatch {
    let mut out = OutputBatch::default();
    for p in parts {
        let base = out.data.len() as u32;
        let header_base = out.headers.len() as u32;
        let shift = |s: Span| {
            if s.is_absent() {
                s
            } else {
                Span {
                    offset: s.offset + base,
                    len: s.len,
                }
            }
        };
        out.data.extend_from_slice(&p.data);
        out.headers.extend(p.headers.iter().map(|h| HeaderMeta {
            name: shift(h.name),
            value: shift(h.value),
        }));
        out.outputs.extend(p.outputs.iter().map(|o| {
            let mut event = o.event;
            event.key = shift(event.key);
            event.value = shift(event.value);
            event.headers_start += header_base;
            OutputMeta {
                event,
                port: shift(o.port),
            }
        }));
    }
    out
}

/// Every output as a record, with its port (`None`: the main output).
pub fn records(out: &OutputBatch) -> Vec<(Record, Option<String>)> {
    out.outputs
        .iter()
        .map(|o| {
            let r = batch::decode(&out.data, &out.headers, &o.event);
            let port = o
                .port
                .get(&out.data)
                .map(|p| String::from_utf8_lossy(p).into_owned());
            (r, port)
        })
        .collect()
}

/// Appends a shadow's output batch to the records of its topic, reusing its buffers
/// when it has main outputs only (a side output's port goes in a header).
pub fn append_batch(to: &mut EventBatch, out: OutputBatch) {
    if out.outputs.iter().any(|o| !o.port.is_absent()) {
        return append_records(to, records(&out));
    }
    let main = EventBatch {
        data: out.data,
        events: out.outputs.into_iter().map(|o| o.event).collect(),
        headers: out.headers,
    };
    if to.events.is_empty() {
        *to = main;
    } else {
        batch::extend(to, &main);
    }
}

/// Appends a shadow's outputs as records of its topic (a side output's port goes in a
/// header).
pub fn append_records(to: &mut EventBatch, emitted: Vec<(Record, Option<String>)>) {
    for (mut r, port) in emitted {
        if let Some(port) = port {
            r.headers.push((PORT_HEADER.to_string(), port.into_bytes()));
        }
        batch::push_record(to, &r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::{EventMeta, Span};

    fn out(items: &[(&str, Option<&str>)]) -> OutputBatch {
        let mut o = OutputBatch::default();
        for (value, port) in items {
            let value = Span::push(&mut o.data, value.as_bytes());
            let port = match port {
                Some(p) => Span::push(&mut o.data, p.as_bytes()),
                None => Span::NONE,
            };
            o.outputs.push(OutputMeta {
                event: EventMeta {
                    key: Span::NONE,
                    value,
                    timestamp: 7,
                    headers_start: 0,
                    headers_len: 0,
                },
                port,
            });
        }
        o
    }

    #[test]
    fn equal_records_compare_equal_whatever_their_layout() {
        let a = out(&[("x", None), ("y", Some("alerts"))]);
        let b = concat(&[out(&[]), out(&[("x", None)]), out(&[("y", Some("alerts"))])]);
        assert!(same_outputs(&a, &b));
        assert_eq!(records(&a), records(&b));
        assert!(!same_outputs(&a, &out(&[("x", None), ("y", None)])));
        assert!(!same_outputs(&a, &out(&[("x", None)])));
        assert!(!same_outputs(
            &a,
            &out(&[("y", Some("alerts")), ("x", None)])
        ));
    }

    #[test]
    fn side_outputs_keep_their_port_in_a_header() {
        let mut to = EventBatch::default();
        append_batch(&mut to, out(&[("w", None)]));
        append_batch(&mut to, out(&[("x", None), ("y", Some("p"))]));
        let recs: Vec<Record> = batch::records(&to).collect();
        assert_eq!(recs.len(), 3);
        assert!(recs[0].headers.is_empty() && recs[1].headers.is_empty());
        assert_eq!(recs[0].value, b"w");
        assert_eq!(
            recs[2].headers,
            vec![(PORT_HEADER.to_string(), b"p".to_vec())]
        );
    }
}
