use super::StateError;
use super::catalog::{Catalog, StoreName};
use crate::memory::MemoryBudget;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, DB, Options, WriteBatch,
    WriteBufferManager, WriteOptions,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The column families of an Eddy database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cf {
    /// Operator stores: `keys::store_prefix(..) + user key -> value`.
    State,
    /// Event-time timers: `keys::timer_key(..) -> []`.
    Timers,
    /// Task positions, watermarks, and control-plane metadata.
    Meta,
    /// Records of embedded topics.
    Log,
}

impl Cf {
    pub const ALL: [Cf; 4] = [Cf::State, Cf::Timers, Cf::Meta, Cf::Log];

    pub fn name(self) -> &'static str {
        match self {
            Cf::State => "state",
            Cf::Timers => "timers",
            Cf::Meta => "meta",
            Cf::Log => "log",
        }
    }
}

/// Tuning knobs for the database.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// The server's memory budget: RocksDB's share of it bounds the block cache and the
    /// memtables (charged to the cache), and the tasks' state caches are charged to it.
    pub budget: Arc<MemoryBudget>,
    /// fsync every commit. Off by default: a commit survives a process crash (the WAL is
    /// in the OS page cache) but not a power loss.
    pub sync: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            budget: Arc::new(MemoryBudget::machine_default()),
            sync: false,
        }
    }
}

/// The RocksDB database behind one server or one `eddy run --state-dir`.
pub struct Db {
    db: DB,
    path: PathBuf,
    write_options: WriteOptions,
    catalog: Catalog,
    cache: Cache,
    budget: Arc<MemoryBudget>,
}

impl Db {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path, options: &DbOptions) -> Result<Self, StateError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.increase_parallelism(2);
        // One bound for RocksDB's memory, as Kafka Streams' memory guide does it: the
        // memtables are charged to the block cache, flush early when half of it is
        // theirs, and writes wait for flushes past that rather than grow. Write-heavy: memtables as large as that allows, fewer stalls.
        let share = usize::try_from(options.budget.rocksdb_share()).unwrap_or(usize::MAX);
        let cache = Cache::new_lru_cache(share);
        let memtables =
            WriteBufferManager::new_write_buffer_manager_with_cache(share / 2, true, cache.clone());
        opts.set_write_buffer_manager(&memtables);
        opts.set_write_buffer_size((share / 8).min(64 << 20));
        opts.set_max_write_buffer_number(4);
        // A large write (another pipeline's big values) does not hold the small ones
        // queued behind it for both its WAL write and its memtable insert.
        opts.set_enable_pipelined_write(true);
        // No compression where data is young (it is rewritten soon, and the CPU is better
        // spent on processing); LZ4 below.
        opts.set_compression_per_level(&[
            rocksdb::DBCompressionType::None,
            rocksdb::DBCompressionType::None,
            rocksdb::DBCompressionType::Lz4,
            rocksdb::DBCompressionType::Lz4,
            rocksdb::DBCompressionType::Lz4,
            rocksdb::DBCompressionType::Lz4,
            rocksdb::DBCompressionType::Lz4,
        ]);
        let cfs = Cf::ALL.map(|cf| {
            let mut cf_opts = opts.clone();
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            if cf == Cf::State {
                // State is read by key, and a first read is usually of an absent key (a new
                // word, a new user): bloom filters answer it without searching, the
                // memtable's included. Logs and timers are scanned (timers are looked up
                // by key only near an operator's max_pending_timers).
                table.set_bloom_filter(10.0, false);
                cf_opts.set_memtable_prefix_bloom_ratio(0.1);
                cf_opts.set_memtable_whole_key_filtering(true);
            }
            cf_opts.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(cf.name(), cf_opts)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| StateError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let mut write_options = WriteOptions::default();
        write_options.set_sync(options.sync);
        Ok(Db {
            db,
            path: path.to_path_buf(),
            write_options,
            catalog: Catalog::default(),
            cache,
            budget: Arc::clone(&options.budget),
        })
    }

    /// The server's memory budget.
    pub fn budget(&self) -> &Arc<MemoryBudget> {
        &self.budget
    }

    /// What RocksDB's block cache holds now, memtables included.
    pub fn memory_usage(&self) -> u64 {
        self.cache.get_usage() as u64
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The handle of a column family (all exist from `open` on).
    pub fn cf(&self, cf: Cf) -> &ColumnFamily {
        self.db
            .cf_handle(cf.name())
            .expect("column families are created at open")
    }

    /// The underlying RocksDB handle.
    pub fn rocks(&self) -> &DB {
        &self.db
    }

    /// Flushes every memtable to disk (benchmarks use it to start from a quiet database).
    pub fn flush(&self) -> Result<(), StateError> {
        self.flush_cfs(&Cf::ALL)
    }

    /// Flushes the memtables of `cfs` to disk, one after the other, waiting for each.
    pub fn flush_cfs(&self, cfs: &[Cf]) -> Result<(), StateError> {
        for &cf in cfs {
            self.db.flush_cf(self.cf(cf))?;
        }
        Ok(())
    }

    /// Reads one value.
    pub fn get(&self, cf: Cf, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.db.get_pinned_cf(self.cf(cf), key)?.map(|v| v.to_vec()))
    }

    /// The key-prefix id of a store (allocated on first use).
    pub fn store_id(&self, name: &StoreName) -> Result<u32, StateError> {
        self.catalog.id(self, name)
    }

    /// The key-prefix id of a store that has one (none is allocated).
    pub fn existing_store_id(&self, name: &StoreName) -> Result<Option<u32>, StateError> {
        self.catalog.existing(self, name)
    }

    /// The stores of a pipeline (of one operator, if given) that ever got an id.
    pub fn stores(
        &self,
        pipeline: &str,
        operator: Option<&str>,
    ) -> Result<Vec<(StoreName, u32)>, StateError> {
        self.catalog.list(self, pipeline, operator)
    }

    /// Deletes everything a pipeline keeps in state, timers and positions (not its
    /// definition), in one write.
    pub fn delete_pipeline_state(&self, pipeline: &str) -> Result<(), StateError> {
        let mut wb = self.delete_stores_batch(pipeline)?;
        let positions = super::keys::positions_prefix(pipeline);
        let end = super::keys::prefix_end(&positions).expect("position prefixes are not all 0xff");
        wb.delete_range_cf(self.cf(Cf::Meta), positions, end);
        self.write(wb)
    }

    /// Deletes a pipeline's stores and timers and what they reflect of their changelogs,
    /// keeping its positions (before a rebuild from the changelogs).
    pub fn delete_pipeline_stores(&self, pipeline: &str) -> Result<(), StateError> {
        let wb = self.delete_stores_batch(pipeline)?;
        self.write(wb)
    }

    fn delete_stores_batch(&self, pipeline: &str) -> Result<WriteBatch, StateError> {
        let mut wb = WriteBatch::default();
        for (_, id) in self.stores(pipeline, None)? {
            let (from, to) = (id.to_be_bytes(), (id + 1).to_be_bytes());
            wb.delete_range_cf(self.cf(Cf::State), from, to);
            wb.delete_range_cf(self.cf(Cf::Timers), from, to);
        }
        let mut markers = b"clog".to_vec();
        super::keys::push_name(&mut markers, pipeline);
        let end = super::keys::prefix_end(&markers).expect("marker prefixes are not all 0xff");
        wb.delete_range_cf(self.cf(Cf::Meta), markers, end);
        Ok(wb)
    }

    /// Every state entry and timer of a pipeline, by store: `(operator, store, partition,
    /// key) -> value` (timers under store `__timers`). For checks and tests.
    pub fn dump_pipeline(
        &self,
        pipeline: &str,
    ) -> Result<std::collections::BTreeMap<(String, String, u32, Vec<u8>), Vec<u8>>, StateError>
    {
        let mut out = std::collections::BTreeMap::new();
        let stores = self.stores(pipeline, None)?;
        for (name, id) in stores
            .into_iter()
            .filter(|(n, _)| !super::is_shadow_scope(&n.operator))
        {
            let (cf, store) = if name.store == super::TIMERS {
                (Cf::Timers, super::changelog::TIMERS_STORE.to_string())
            } else {
                (Cf::State, name.store.clone())
            };
            for item in self.db.prefix_iterator_cf(self.cf(cf), id.to_be_bytes()) {
                let (k, v) = item?;
                if !k.starts_with(&id.to_be_bytes()) {
                    break;
                }
                let partition =
                    u32::from_be_bytes(k[4..8].try_into().expect("task prefixes are 8 bytes"));
                out.insert(
                    (
                        name.operator.clone(),
                        store.clone(),
                        partition,
                        k[8..].to_vec(),
                    ),
                    v.to_vec(),
                );
            }
        }
        Ok(out)
    }

    /// Approximate bytes of a pipeline's state: RocksDB's estimate for data in files,
    /// and for a store none of whose data reached a file yet (it is all in the memtable,
    /// so at most the write buffer's size), the bytes of its keys and values.
    pub fn pipeline_state_bytes(&self, pipeline: &str) -> Result<u64, StateError> {
        let ids = self.stores(pipeline, None)?;
        let bounds: Vec<([u8; 4], [u8; 4])> = ids
            .iter()
            .map(|(_, id)| (id.to_be_bytes(), (id + 1).to_be_bytes()))
            .collect();
        let ranges: Vec<rocksdb::Range<'_>> = bounds
            .iter()
            .map(|(a, b)| rocksdb::Range::new(a, b))
            .collect();
        let sizes = self
            .db
            .get_approximate_sizes_cf(self.cf(Cf::State), &ranges);
        let mut total = 0u64;
        for ((from, to), size) in bounds.iter().zip(sizes) {
            total += if size > 0 {
                size
            } else {
                self.range_bytes(Cf::State, from, to)?
            };
        }
        Ok(total)
    }

    /// Bytes of the keys and values in `[from, to)` of a column family, counted.
    fn range_bytes(&self, cf: Cf, from: &[u8], to: &[u8]) -> Result<u64, StateError> {
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_iterate_upper_bound(to.to_vec());
        let mut it = self.db.raw_iterator_cf_opt(self.cf(cf), ro);
        it.seek(from);
        let mut bytes = 0u64;
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            bytes += (k.len() + v.len()) as u64;
            it.next();
        }
        it.status()?;
        Ok(bytes)
    }

    /// Writes a batch atomically: the one way commits reach disk.
    pub fn write(&self, batch: WriteBatch) -> Result<(), StateError> {
        Ok(self.db.write_opt(batch, &self.write_options)?)
    }

    /// Writes a batch without the write-ahead log: a crash loses it until its column
    /// family is flushed ([`Db::flush_cfs`]). Only for work that is redone after a crash
    /// (a restore), and nothing that accounts for it may be written before that flush.
    pub fn write_unlogged(&self, batch: WriteBatch) -> Result<(), StateError> {
        let mut options = WriteOptions::default();
        options.disable_wal(true);
        Ok(self.db.write_opt(batch, &options)?)
    }
}
