//! How the CLI prints: tables for people, JSON for scripts.

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{ContentArrangement, Table};
use serde::Serialize;

/// A table with `header`.
pub fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    t
}

/// Prints `value` as pretty JSON.
pub fn json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("values serialize")
    );
}

/// A millisecond timestamp as RFC 3339 (UTC, seconds).
pub fn time(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// Longest error a status table shows (`--json` has the whole text).
pub const ERROR_WIDTH: usize = 100;

/// An error on one line of a table: a multi-line error (a Python traceback, say) as its
/// first line and its last one (where the exception is), cut to [`ERROR_WIDTH`] with
/// the last line kept whole where it can be.
pub fn one_line(text: &str) -> String {
    let cut = |s: &str, n: usize| -> String {
        if s.chars().count() <= n {
            s.to_string()
        } else {
            let mut c: String = s.chars().take(n.saturating_sub(1)).collect();
            c.push('…');
            c
        }
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    match lines.as_slice() {
        [] => String::new(),
        [one] => cut(one, ERROR_WIDTH),
        [first, .., last] => {
            let last = cut(last, ERROR_WIDTH / 2);
            let room = ERROR_WIDTH - last.chars().count() - 3;
            format!("{} … {last}", cut(first, room))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_fit_one_table_line() {
        assert_eq!(one_line("plain"), "plain");
        let traceback = "operator fraud@1: process failed on record 3 of partition 0: Traceback (most recent call last):\n  File \"app.py\", line 9\n    x = state['max']\nKeyError: 'max'\n";
        let shown = one_line(traceback);
        assert!(shown.ends_with(" … KeyError: 'max'"), "{shown}");
        assert!(
            shown.starts_with("operator fraud@1: process failed"),
            "{shown}"
        );
        assert!(shown.chars().count() <= ERROR_WIDTH, "{shown}");
        let short = "failed:\nKeyError: 'max'";
        assert_eq!(one_line(short), "failed: … KeyError: 'max'");
        assert!(one_line(&"x".repeat(500)).chars().count() <= ERROR_WIDTH);
    }

    #[test]
    fn formats_times() {
        assert_eq!(time(1_700_000_000_000), "2023-11-14T22:13:20Z");
    }
}
