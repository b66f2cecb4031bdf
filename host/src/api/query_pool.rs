//! State queries run on threads of their own at a lower CPU priority: a client reading as
//! fast as it can then gets the CPU the tasks leave, not a share of the cores they run on
//! (a client waiting for each answer slows down with it). Nothing but queries runs there,
//! so no thread that starts from one (a pipeline's, librdkafka's) inherits the priority.
//! A query reads RocksDB inline on a query thread (a read never waits for a task): a
//! hop to another thread would wait for the CPU once more at this priority.

use super::ApiError;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

/// The threads that answer state queries, started at the first query.
pub struct QueryPool {
    /// Added to the nice value of the thread that starts the pool, for its threads (0:
    /// the server's own priority).
    nice: i32,
    runtime: OnceLock<Runtime>,
}

impl QueryPool {
    pub fn new(nice: i32) -> Self {
        QueryPool {
            nice,
            runtime: OnceLock::new(),
        }
    }

    /// Runs a query's work there.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
    ) -> Result<T, ApiError> {
        let task = self.runtime()?.spawn(work);
        // A caller that goes away (its client hung up) takes its query with it.
        let _abort = AbortOnDrop(task.abort_handle());
        task.await.map_err(ApiError::internal)?
    }

    fn runtime(&self) -> Result<&Runtime, ApiError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        // The same value for every thread of the pool, whichever of them starts it.
        let nice = own_nice().saturating_add(self.nice).min(19);
        let rt = tokio::runtime::Builder::new_multi_thread()
            // Two, so that a query waiting for the pipelines' lock (held while a stage's
            // tasks start) does not hold up every other.
            .worker_threads(2)
            .max_blocking_threads(8)
            .thread_name("eddy-query")
            .on_thread_start(move || lower_priority(nice))
            .enable_all()
            .build()
            .map_err(ApiError::internal)?;
        // Two first queries at once may both build one; the loser's goes unused (and a
        // runtime may not block in its drop on the server's async threads).
        if let Err(unused) = self.runtime.set(rt) {
            unused.shutdown_background();
        }
        Ok(self.runtime.get().expect("set above"))
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Drop for QueryPool {
    fn drop(&mut self) {
        // Dropped from the server's async threads: a runtime may not block there.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The calling thread's nice value (on Linux each thread has its own).
#[cfg(target_os = "linux")]
fn own_nice() -> i32 {
    // SAFETY: a plain system call about the calling thread (which cannot fail for it, so
    // -1 is a nice value here, not an error).
    unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
}

/// Gives the calling thread nice value `nice` when that is below its priority (a
/// thread may always lower its own priority, never raise it without privileges).
#[cfg(target_os = "linux")]
fn lower_priority(nice: i32) {
    if nice <= own_nice() {
        return;
    }
    // SAFETY: a plain system call on the calling thread.
    let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
    if r != 0 {
        tracing::warn!(
            nice,
            error = %std::io::Error::last_os_error(),
            "a state query thread keeps the server's priority"
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn own_nice() -> i32 {
    0
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(_nice: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn queries_run_below_the_callers_priority_and_only_they_do() {
        let before = own_nice();
        let pool = QueryPool::new(5);
        let (worker, blocking) = pool
            .run(async {
                let worker = own_nice();
                let blocking = tokio::task::spawn_blocking(own_nice)
                    .await
                    .map_err(ApiError::internal)?;
                Ok((worker, blocking))
            })
            .await
            .unwrap();
        let expected = (before + 5).min(19);
        assert_eq!((worker, blocking), (expected, expected));
        assert_eq!(own_nice(), before, "the caller's thread keeps its priority");
        let same = QueryPool::new(0)
            .run(async { Ok(own_nice()) })
            .await
            .unwrap();
        assert_eq!(same, before);
        drop(pool); // inside an async context: must not panic
    }
}
