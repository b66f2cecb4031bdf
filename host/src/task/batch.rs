//! An operator's output as it comes back: checked (a buggy guest cannot make the host
//! index out of bounds) and split into the main output and side outputs.

use crate::record::Record;
use crate::record::batch::{self, EventBatch, OutputBatch, Span};
use crate::runtime::{CallError, TrapKind};

const ABSENT: u32 = Span::ABSENT;

/// Checks that every span of an operator's output lies inside its buffers and that
/// names are UTF-8, so a buggy guest cannot make the host index out of bounds.
pub fn check_output(out: &OutputBatch) -> Result<(), String> {
    let len = out.data.len() as u64;
    let span_ok = |s: &Span, optional: bool| {
        (optional && s.len == ABSENT) || (s.len != ABSENT && s.offset as u64 + s.len as u64 <= len)
    };
    for h in &out.headers {
        if !span_ok(&h.name, false) || !span_ok(&h.value, false) {
            return Err("a header span points outside the batch data".into());
        }
        if std::str::from_utf8(h.name.get(&out.data).unwrap_or_default()).is_err() {
            return Err("a header name is not UTF-8".into());
        }
    }
    for (i, o) in out.outputs.iter().enumerate() {
        let e = &o.event;
        if !span_ok(&e.key, true) || !span_ok(&e.value, false) || !span_ok(&o.port, true) {
            return Err(format!(
                "output {i} has a span outside the batch data of {} bytes (key {:?}, value {:?}, port {:?})",
                out.data.len(),
                e.key,
                e.value,
                o.port
            ));
        }
        if e.headers_start as u64 + e.headers_len as u64 > out.headers.len() as u64 {
            return Err(format!("output {i} names headers beyond the header list"));
        }
        if let Some(port) = o.port.get(&out.data) {
            let port = std::str::from_utf8(port)
                .map_err(|_| format!("output {i} has a port name that is not UTF-8"))?;
            crate::model::spec::check_name("port", port).map_err(|e| format!("output {i}: {e}"))?;
        }
    }
    Ok(())
}

/// Splits a checked output batch into the main output (a batch for the next operator or
/// the sink; the buffers are reused, not copied) and side outputs by port.
pub fn split_output(out: OutputBatch) -> (EventBatch, Vec<(String, Record)>) {
    if out.outputs.iter().all(|o| o.port.len == ABSENT) {
        let events = out.outputs.into_iter().map(|o| o.event).collect();
        return (
            EventBatch {
                data: out.data,
                events,
                headers: out.headers,
            },
            Vec::new(),
        );
    }
    let mut main = batch::empty();
    let mut side = Vec::new();
    for o in &out.outputs {
        let r = batch::decode(&out.data, &out.headers, &o.event);
        match o.port.get(&out.data) {
            None => batch::push_record(&mut main, &r),
            Some(port) => side.push((String::from_utf8_lossy(port).into_owned(), r)),
        }
    }
    (main, side)
}

/// A checked output batch; a malformed one is the operator's trap.
pub fn checked(out: OutputBatch) -> Result<OutputBatch, CallError> {
    check_output(&out).map_err(|m| CallError::Trap {
        kind: TrapKind::Other,
        message: format!("the operator returned a malformed output batch: {m}"),
    })?;
    Ok(out)
}

/// Adds an operator's output to a main output and side outputs being gathered.
pub fn absorb(out: OutputBatch, main: &mut EventBatch, side: &mut Vec<(String, Record)>) {
    let (m, s) = split_output(out);
    if main.events.is_empty() {
        *main = m;
    } else {
        batch::extend(main, &m);
    }
    side.extend(s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::batch::tests::rec;
    use crate::record::batch::{OutputMeta, from_records, records};

    fn as_output(b: EventBatch, port_of: impl Fn(usize) -> Option<&'static str>) -> OutputBatch {
        let mut data = b.data;
        let outputs = b
            .events
            .into_iter()
            .enumerate()
            .map(|(i, event)| {
                let port = match port_of(i) {
                    Some(p) => Span::push(&mut data, p.as_bytes()),
                    None => Span::NONE,
                };
                OutputMeta { event, port }
            })
            .collect();
        OutputBatch {
            data,
            outputs,
            headers: b.headers,
        }
    }

    #[test]
    fn splits_main_and_side_outputs() {
        let rs = vec![
            rec(Some("a"), "1", 1),
            rec(None, "2", 2),
            rec(Some("c"), "3", 3),
        ];
        let out = as_output(from_records(&rs), |i| (i == 1).then_some("late"));
        check_output(&out).unwrap();
        let (main, side) = split_output(out);
        assert_eq!(
            records(&main).collect::<Vec<_>>(),
            vec![rs[0].clone(), rs[2].clone()]
        );
        assert_eq!(side, vec![("late".to_string(), rs[1].clone())]);
    }

    #[test]
    fn rejects_spans_outside_the_buffer() {
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| None);
        out.outputs[0].event.value.len = 1000;
        assert!(check_output(&out).is_err());
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| None);
        out.outputs[0].event.headers_len = 5;
        assert!(check_output(&out).is_err());
        let mut out = as_output(from_records(&[rec(Some("a"), "1", 1)]), |_| {
            Some("bad port!")
        });
        out.outputs[0].event.key.offset = u32::MAX - 1;
        assert!(check_output(&out).is_err());
    }
}
