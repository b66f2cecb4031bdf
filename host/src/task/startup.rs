//! Starting a stage's tasks side by side: with a Kafka sink each task first opens its
//! producer and restores its state from the changelogs, mostly waiting on the broker,
//! so several partitions do that at once.

/// How many partitions start at once: the machine's cores, at least 2, at most 8.
pub fn startup_width() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// `f` of every item, `width` at a time on threads of their own; the results in order,
/// or the first error (after which no further items start: each start fences a
/// partition's previous owner and restores its state, work an error makes moot). An
/// item whose thread cannot start runs on the caller's; a panic in `f` goes on there.
pub fn side_by_side<T: Sync, R: Send, E: Send>(
    items: &[T],
    width: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E> {
    let f = &f;
    let mut out = Vec::with_capacity(items.len());
    for chunk in items.chunks(width.max(1)) {
        let results: Vec<Result<R, E>> = std::thread::scope(|scope| {
            let started: Vec<_> = chunk
                .iter()
                .map(|item| {
                    std::thread::Builder::new()
                        .name("eddy-task-start".into())
                        .spawn_scoped(scope, move || f(item))
                        .map_err(|_| item)
                })
                .collect();
            started
                .into_iter()
                .map(|t| match t {
                    Ok(t) => t.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                    Err(item) => f(item),
                })
                .collect()
        });
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_width() {
        let items: Vec<u32> = (0..7).collect();
        for width in [0, 1, 2, 3, 8] {
            let got: Result<Vec<u32>, ()> = side_by_side(&items, width, |i| Ok(i * 10));
            assert_eq!(got.unwrap(), (0..7).map(|i| i * 10).collect::<Vec<_>>());
        }
        assert!((2..=8).contains(&startup_width()));
    }

    #[test]
    fn after_an_error_no_further_chunk_starts() {
        let items: Vec<u32> = (0..6).collect();
        let started = std::sync::Mutex::new(Vec::new());
        let got = side_by_side(&items, 2, |&i| {
            started.lock().unwrap().push(i);
            if i == 3 { Err(i) } else { Ok(i) }
        });
        assert_eq!(got, Err(3));
        let mut started = started.into_inner().unwrap();
        started.sort_unstable();
        // The chunk with the error ran whole; the one after it never started.
        assert_eq!(started, vec![0, 1, 2, 3]);
    }
}
