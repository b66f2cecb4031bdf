//! Progress for long calls (savepoints, restores, upgrades, archives), on stderr and only
//! for people (never with --json).

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

/// A spinner with `message`; hidden for scripts.
pub fn spinner(message: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("valid template"),
    );
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A byte counter for transfers of `total` bytes (when known).
pub fn bytes(message: &str, total: Option<u64>, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let pb = match total {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec})")
            .expect("valid template"),
    );
    pb.set_message(message.to_string());
    pb
}
