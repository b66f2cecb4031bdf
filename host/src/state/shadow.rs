//! What a shadow run keeps in the database: a copy of one operator's state in one task,
//! under the operator's shadow scope, and the task's comparison report beside its
//! position. Both change only in the task's atomic commits.

use super::meta::TaskId;
use super::{Cf, Commit, Db, StateError, StateScope, TIMERS, keys};

/// Appended to an operator's id to name its shadow's state scope. Ids cannot hold `~`,
/// so the scope never meets a real operator's.
pub const SHADOW_SUFFIX: &str = "~shadow";

/// Whether an operator scope is a shadow's (savepoints and state dumps leave it out).
pub fn is_shadow_scope(operator: &str) -> bool {
    operator.ends_with(SHADOW_SUFFIX)
}

impl StateScope {
    /// The scope of this operator's shadow in the same task.
    pub fn shadow(&self) -> StateScope {
        StateScope {
            operator: format!("{}{SHADOW_SUFFIX}", self.operator),
            ..self.clone()
        }
    }
}

/// The meta key of a task's shadow report (beside its position, so a pipeline's
/// deletion takes it too).
fn report_key(task: &TaskId) -> Vec<u8> {
    let mut key = keys::position_key(&task.pipeline, task.stage, task.partition);
    key.extend_from_slice(b"/shadow");
    key
}

impl Commit {
    /// The task's shadow report as of this commit.
    pub fn put_shadow_report(&mut self, task: &TaskId, report: &[u8]) {
        let db = std::sync::Arc::clone(self.db());
        self.batch()
            .put_cf(db.cf(Cf::Meta), report_key(task), report);
    }

    /// Removes the task's shadow report.
    pub fn delete_shadow_report(&mut self, task: &TaskId) {
        let db = std::sync::Arc::clone(self.db());
        self.batch().delete_cf(db.cf(Cf::Meta), report_key(task));
    }

    /// Replaces what `to` holds in its task with what `from` holds (committed state
    /// and timers): a shadow's starting copy.
    pub fn copy_task_state(
        &mut self,
        from: &StateScope,
        to: &StateScope,
    ) -> Result<(), StateError> {
        self.delete_task_state(to)?;
        let db = std::sync::Arc::clone(self.db());
        for (name, id) in db.stores(&from.pipeline, Some(&from.operator))? {
            let cf = cf_of(&name.store);
            let target = db.store_id(&to.store_name(&name.store))?;
            let source = keys::task_prefix(id, from.partition);
            let dest = keys::task_prefix(target, to.partition);
            let mut ro = rocksdb::ReadOptions::default();
            ro.set_iterate_upper_bound(keys::prefix_end(&source).expect("task prefixes end"));
            let mut it = db.rocks().raw_iterator_cf_opt(db.cf(cf), ro);
            it.seek(&source);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                let key = [dest.as_slice(), &k[source.len()..]].concat();
                self.batch().put_cf(db.cf(cf), key, v);
                it.next();
            }
            it.status()?;
        }
        Ok(())
    }

    /// Deletes everything `scope` holds in its task (state and timers).
    pub fn delete_task_state(&mut self, scope: &StateScope) -> Result<(), StateError> {
        let db = std::sync::Arc::clone(self.db());
        for (name, id) in db.stores(&scope.pipeline, Some(&scope.operator))? {
            let prefix = keys::task_prefix(id, scope.partition);
            let end = keys::prefix_end(&prefix).expect("task prefixes end");
            self.batch()
                .delete_range_cf(db.cf(cf_of(&name.store)), prefix, end);
        }
        Ok(())
    }
}

fn cf_of(store: &str) -> Cf {
    if store == TIMERS {
        Cf::Timers
    } else {
        Cf::State
    }
}

/// A task's committed shadow report, if it has one.
pub fn load_shadow_report(db: &Db, task: &TaskId) -> Result<Option<Vec<u8>>, StateError> {
    db.get(Cf::Meta, &report_key(task))
}
