//! Starting a stage's tasks side by side: with a Kafka sink each task first opens its
//! producer and restores its state from the changelogs, mostly waiting on the broker,
//! so several partitions do that at once.

/// How many partitions start at once: the machine's cores, at least 2, at most 8.
pub fn startup_width() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// `f` of every item, `width` at a time on threads of their own; the results in order.
/// A panic in `f` goes on in the caller.
pub fn side_by_side<T: Sync, R: Send>(
    items: &[T],
    width: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let f = &f;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(width.max(1)) {
        std::thread::scope(|scope| {
            let threads: Vec<_> = chunk
                .iter()
                .map(|item| scope.spawn(move || f(item)))
                .collect();
            out.extend(
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap_or_else(|e| std::panic::resume_unwind(e))),
            );
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_width() {
        let items: Vec<u32> = (0..7).collect();
        for width in [0, 1, 2, 3, 8] {
            assert_eq!(
                side_by_side(&items, width, |i| i * 10),
                (0..7).map(|i| i * 10).collect::<Vec<_>>()
            );
        }
        assert!((2..=8).contains(&startup_width()));
    }
}
