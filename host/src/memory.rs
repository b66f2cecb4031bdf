//! The server's memory budget (`eddy serve --memory-budget`), as Kafka Streams bounds
//! RocksDB: its block cache and memtables get a fixed share (the memtables charged to the
//! cache), and what operators hold — Wasm linear memories and the tasks' state caches —
//! is charged to the rest as it grows. A Wasm memory that would pass the budget does not
//! grow (the call fails, naming the budget); when the state caches bring the budget
//! near its end, tasks commit early, drop their cached state and wait before their next
//! batch rather than grow.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

const MIB: u64 = 1 << 20;

/// The smallest budget a server runs with.
pub const MIN_BUDGET: u64 = 128 * MIB;

/// Used above this share of what operators may hold, tasks shed memory.
const SHED_AT_PERCENT: u64 = 90;

/// What holds memory charged to the budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Wasm linear memories of operator instances.
    Wasm,
    /// Cached and uncommitted state of tasks.
    State,
}

/// The server-wide memory budget and what is charged to it.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    rocksdb: u64,
    /// Everything charged (Wasm and state), checked against `limit - rocksdb`.
    used: AtomicU64,
    wasm: AtomicU64,
    state: AtomicU64,
}

/// Where the budget goes, for the status and `/metrics`.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
pub struct MemoryUsage {
    /// The whole budget, in bytes.
    pub budget_bytes: u64,
    /// RocksDB's share: its block cache, with the memtables charged to it.
    pub rocksdb_limit_bytes: u64,
    /// What RocksDB's cache holds now (memtables included).
    pub rocksdb_bytes: u64,
    /// Wasm linear memories of every operator instance.
    pub wasm_bytes: u64,
    /// Cached and uncommitted state of every task.
    pub state_bytes: u64,
}

/// A Wasm memory may not grow: the budget is spent.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server's memory budget is used up: an operator instance asked for {} more, and operators hold {} of the {} they may (the budget is {}, RocksDB takes {}); raise eddy serve --memory-budget or lower settings.memory_limit_mb",
    mib(*.asked), mib(*.held), mib(*.allowed), mib(*.budget), mib(*.budget - *.allowed)
)]
pub struct BudgetExhausted {
    pub asked: u64,
    pub held: u64,
    pub allowed: u64,
    pub budget: u64,
}

fn mib(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

impl MemoryBudget {
    /// A budget of `limit` bytes: a quarter goes to RocksDB (at least 32 MiB, at most
    /// 4 GiB), the rest to what operators hold.
    pub fn new(limit: u64) -> Self {
        let limit = limit.max(MIN_BUDGET);
        MemoryBudget {
            limit,
            rocksdb: (limit / 4).clamp(32 * MIB, 4096 * MIB),
            used: AtomicU64::new(0),
            wasm: AtomicU64::new(0),
            state: AtomicU64::new(0),
        }
    }

    /// The default budget: half of the machine's memory (4 GiB where it cannot be read).
    pub fn machine_default() -> Self {
        Self::new(machine_memory().map_or(4096 * MIB, |m| m / 2))
    }

    /// The whole budget, in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// RocksDB's share, in bytes.
    pub fn rocksdb_share(&self) -> u64 {
        self.rocksdb
    }

    /// What operators may hold in all.
    fn allowed(&self) -> u64 {
        self.limit - self.rocksdb
    }

    fn holder(&self, holder: Holder) -> &AtomicU64 {
        match holder {
            Holder::Wasm => &self.wasm,
            Holder::State => &self.state,
        }
    }

    /// Charges `bytes` unless that passes the budget.
    pub fn try_charge(&self, holder: Holder, bytes: u64) -> Result<(), BudgetExhausted> {
        let allowed = self.allowed();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= allowed)
            })
            .map_err(|held| BudgetExhausted {
                asked: bytes,
                held,
                allowed,
                budget: self.limit,
            })?;
        self.holder(holder).fetch_add(bytes, Ordering::AcqRel);
        Ok(())
    }

    /// Charges `bytes` that are held already (the holder sheds them at its next chance).
    pub fn charge(&self, holder: Holder, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::AcqRel);
        self.holder(holder).fetch_add(bytes, Ordering::AcqRel);
    }

    /// Gives back `bytes` charged before.
    pub fn release(&self, holder: Holder, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        self.holder(holder).fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Whether tasks should shed memory: commit early, drop cached state, and wait
    /// before their next batch. Only while cached state is a part worth shedding (a
    /// twentieth of what operators may hold): Wasm memories never shrink, and waiting would
    /// not make them.
    pub fn short(&self) -> bool {
        let allowed = self.allowed();
        self.used.load(Ordering::Acquire) > allowed / 100 * SHED_AT_PERCENT
            && self.state.load(Ordering::Acquire) > allowed / 20
    }

    /// Where the budget goes; `rocksdb_bytes` is what the database reports.
    pub fn usage(&self, rocksdb_bytes: u64) -> MemoryUsage {
        MemoryUsage {
            budget_bytes: self.limit,
            rocksdb_limit_bytes: self.rocksdb,
            rocksdb_bytes,
            wasm_bytes: self.wasm.load(Ordering::Acquire),
            state_bytes: self.state.load(Ordering::Acquire),
        }
    }
}

/// A holder's running charge: set it to what the holder holds now, and it charges or
/// releases the difference; dropping it releases everything.
#[derive(Debug)]
pub struct Charge {
    budget: std::sync::Arc<MemoryBudget>,
    holder: Holder,
    bytes: u64,
}

impl Charge {
    pub fn new(budget: std::sync::Arc<MemoryBudget>, holder: Holder) -> Self {
        Charge {
            budget,
            holder,
            bytes: 0,
        }
    }

    /// The budget charged.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// What is charged now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Charges what the holder holds now, whatever the budget says.
    pub fn set(&mut self, bytes: u64) {
        if bytes > self.bytes {
            self.budget.charge(self.holder, bytes - self.bytes);
        } else {
            self.budget.release(self.holder, self.bytes - bytes);
        }
        self.bytes = bytes;
    }

    /// Grows the charge to `bytes` unless that passes the budget.
    pub fn grow_to(&mut self, bytes: u64) -> Result<(), BudgetExhausted> {
        if bytes > self.bytes {
            self.budget.try_charge(self.holder, bytes - self.bytes)?;
            self.bytes = bytes;
        }
        Ok(())
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budget.release(self.holder, self.bytes);
    }
}

/// The machine's memory (`MemTotal` of `/proc/meminfo`), where it can be read.
pub fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Reads a size as people write it: `4GiB`, `512MiB`, `4096` (`4GB` is 4×10⁹ bytes).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bytes = text
        .trim()
        .parse::<bytesize::ByteSize>()
        .map_err(|e| format!("{text:?} is not a size ({e}): write it like 4GiB or 512MiB"))?
        .as_u64();
    if bytes == 0 {
        return Err(format!("{text:?}: a size must be above 0"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(parse_size("4GiB"), Ok(4 << 30));
        assert_eq!(parse_size("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "GiB", "4 parsecs", "-1G", "0"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn wasm_growth_stops_at_the_budget_and_state_makes_it_short() {
        let budget = Arc::new(MemoryBudget::new(1024 * MIB));
        assert_eq!(budget.rocksdb_share(), 256 * MIB);
        let mut wasm = Charge::new(Arc::clone(&budget), Holder::Wasm);
        wasm.grow_to(600 * MIB).unwrap();
        assert!(!budget.short());
        let err = wasm.grow_to(800 * MIB).unwrap_err();
        assert_eq!((err.held, err.allowed), (600 * MIB, 768 * MIB));
        assert!(err.to_string().contains("--memory-budget"), "{err}");
        // State is charged as held; past 90% of what operators may hold, tasks shed.
        let mut state = Charge::new(Arc::clone(&budget), Holder::State);
        state.set(100 * MIB);
        assert!(budget.short());
        state.set(10 * MIB);
        assert!(!budget.short());
        drop(wasm);
        let u = budget.usage(5);
        assert_eq!(
            (u.wasm_bytes, u.state_bytes, u.rocksdb_bytes),
            (0, 10 * MIB, 5)
        );
        drop(state);
        assert_eq!(budget.usage(0).state_bytes, 0);
    }
}
