//! The only code that touches the data directory: the redb database, key files and images.
//!
//! All redb work runs on tokio's blocking pool ([`Store::read`], [`Store::write`]), never on the
//! I/O thread. Nothing here knows about sessions or the wire protocol.

pub(crate) mod actions;
pub(crate) mod can;
pub(crate) mod data_dir;
pub(crate) mod database;
pub(crate) mod followers;
pub(crate) mod group_commit;
pub(crate) mod identities;
pub(crate) mod images;
pub(crate) mod index_load;
pub(crate) mod keys;
pub(crate) mod neighbors;
pub(crate) mod relations;
pub(crate) mod servers;
pub(crate) mod tables;

/// The records stored in the tables (protobuf, generated from `proto/store.proto`).
pub use crate::wire::proto::iop::store as records;

// What other crates (the binary, tests and benches that seed or inspect a data directory) use.
pub use data_dir::inspect as inspect_data_dir;
pub use identities::NewImage;
pub use images::image_path;
pub use index_load::IndexRecord;
pub use keys::{TlsMaterial, load_or_create_identity, load_or_create_tls};
pub use tables::{HOSTED_IDENTITIES, IMAGES, NEIGHBOR_IDENTITIES, NEIGHBORS};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use crate::metrics::Histogram;
pub(crate) use redb::Durability;
use redb::{Database, ReadTransaction, ReadableDatabase, ReadableTable, WriteTransaction};

use tables::{SCHEMA_VERSION, SCHEMA_VERSION_KEY, SETTINGS};

/// File name of the database inside the data directory.
pub const DATABASE_FILE: &str = "profile-server.redb";

/// Storage failures. None of them is the client's fault: they map to ERROR_INTERNAL.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or a file in it could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// redb failed.
    #[error("database: {0}")]
    Database(#[from] redb::Error),
    /// The database was written by a newer, incompatible version.
    #[error("database schema version {found} is not supported (this build uses {SCHEMA_VERSION})")]
    Schema {
        /// Version found on disk.
        found: u32,
    },
    /// A background task running a transaction died.
    #[error("storage task failed: {0}")]
    Task(String),
    /// The batch a durable write was committed in failed (see [`group_commit`]).
    #[error("write batch failed: {0}")]
    Batch(String),
    /// A stored record does not decode.
    #[error("stored {0} record is corrupt")]
    Record(&'static str),
    /// The database is being reopened after a failed write (see [`database`]).
    #[error("the database is being reopened after a failed write")]
    Unavailable,
    /// A key file holds something else than expected.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl StoreError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

macro_rules! redb_errors {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(error: $ty) -> StoreError {
                StoreError::Database(error.into())
            }
        }
    )*};
}
redb_errors!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Store {
    handle: Arc<database::Handle>,
    shared: Arc<Shared>,
}

/// What every clone of a [`Store`] shares besides the database handle.
struct Shared {
    dir: PathBuf,
    /// Serialises image reference changes with their file writes and deletions.
    images_lock: Mutex<()>,
    /// Readers that need the image files of an older committed state (see [`images::ImagePin`]).
    image_pins: images::Pins,
    /// How long durable writes take (`[metrics]`).
    write_latency: Histogram,
    /// Durable writes waiting for their batch (see [`group_commit`]).
    batcher: group_commit::Batcher,
}

/// A [`Store`] that does not keep the database open (see [`Store::downgrade`]).
struct WeakStore {
    handle: Weak<database::Handle>,
    shared: Arc<Shared>,
}

impl WeakStore {
    /// The store again, unless every [`Store`] was dropped (the database is closed).
    fn upgrade(&self) -> Option<Store> {
        Some(Store {
            handle: self.handle.upgrade()?,
            shared: Arc::clone(&self.shared),
        })
    }
}

impl Store {
    /// A handle that does not keep the database open.
    fn downgrade(&self) -> WeakStore {
        WeakStore {
            handle: Arc::downgrade(&self.handle),
            shared: Arc::clone(&self.shared),
        }
    }

    /// Opens (or creates) the database in `dir` with a page cache of `cache_bytes`, creates
    /// missing tables and checks the schema version. Blocking: call before the runtime serves.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Store, StoreError> {
        Store::open_with(dir, cache_bytes, database::file_backend())
    }

    /// Like [`Store::open`], with the database's storage opened by `backend`.
    pub(crate) fn open_with(
        dir: &Path,
        cache_bytes: u64,
        backend: database::OpenBackend,
    ) -> Result<Store, StoreError> {
        let path = dir.join(DATABASE_FILE);
        let cache = usize::try_from(cache_bytes).unwrap_or(usize::MAX);
        let handle = database::Handle::open(&path, cache, backend)?;
        let txn = handle.get()?.begin_write()?;
        tables::create_all(&txn)?;
        check_schema(&txn)?;
        txn.commit()?;
        Ok(Store {
            handle: Arc::new(handle),
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                images_lock: Mutex::default(),
                image_pins: images::Pins::default(),
                write_latency: Histogram::default(),
                batcher: group_commit::Batcher::default(),
            }),
        })
    }

    /// A store in a new temporary directory, for unit tests; the directory lives as long as
    /// the returned guard.
    #[cfg(test)]
    pub(crate) fn open_temporary() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 1 << 20).expect("open");
        (dir, store)
    }

    /// The database to use now. Blocking (see [`database::Handle::get`]): call it on the
    /// blocking pool, inside the work that uses it.
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.handle.get()
    }

    /// The data directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Takes the image lock; a panic elsewhere while holding it does not make it unusable.
    fn lock_images(&self) -> MutexGuard<'_, ()> {
        self.shared
            .images_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` in a read transaction on the blocking pool.
    pub(crate) async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&ReadTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        run_blocking(move || {
            let txn = store.db()?.begin_read()?;
            work(&txn)
        })
        .await
    }

    /// How long durable writes took from being queued to being on disk (see [`group_commit`]).
    pub(crate) fn write_latency(&self) -> &Histogram {
        &self.shared.write_latency
    }

    /// Commits a durable `txn` begun at `started` and records how long it took.
    pub(crate) fn commit_timed(
        &self,
        txn: WriteTransaction,
        started: std::time::Instant,
    ) -> Result<(), StoreError> {
        txn.commit()?;
        self.shared.write_latency.observe(started.elapsed());
        Ok(())
    }

    /// Runs `work` in its own write transaction on the blocking pool and returns once it is
    /// durable: an acknowledged write survives a crash. Concurrent writes share one fsync
    /// ([`group_commit`]); when `work` fails, its changes are rolled back and nobody else's.
    pub async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        self.write_grouped(move |txn, _| work(txn)).await
    }

    /// Like [`Store::write`], but `Durability::None` skips the fsync: for staged data that a
    /// later durable commit makes permanent, and that start-up discards if none came.
    pub(crate) async fn write_with<T, F>(
        &self,
        durability: Durability,
        work: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Clone + Send + 'static,
    {
        if matches!(durability, Durability::Immediate) {
            return self.write(work).await;
        }
        let store = self.clone();
        run_blocking(move || {
            let mut txn = store.db()?.begin_write()?;
            group_commit::set_durability(&mut txn, durability)?;
            let value = work(&txn)?;
            txn.commit()?;
            Ok(value)
        })
        .await
    }
}

async fn run_blocking<T, F>(work: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// Records the schema version in a new database, or checks the one already there.
fn check_schema(txn: &WriteTransaction) -> Result<(), StoreError> {
    let mut settings = txn.open_table(SETTINGS)?;
    let found = settings.get(SCHEMA_VERSION_KEY)?.map(|value| {
        let bytes: [u8; 4] = value.value().try_into().unwrap_or([0xff; 4]);
        u32::from_le_bytes(bytes)
    });
    match found {
        None => {
            settings.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION.to_le_bytes().as_slice())?;
            Ok(())
        }
        Some(SCHEMA_VERSION) => Ok(()),
        Some(found) => Err(StoreError::Schema { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn schema_version_is_recorded_and_checked() {
        let (dir, store) = Store::open_temporary();
        let version = store
            .read(|txn| {
                let settings = txn.open_table(SETTINGS)?;
                let value = settings
                    .get(SCHEMA_VERSION_KEY)?
                    .map(|v| v.value().to_vec());
                Ok(value)
            })
            .await
            .expect("read");
        assert_eq!(version, Some(SCHEMA_VERSION.to_le_bytes().to_vec()));
        store
            .write(|txn| {
                txn.open_table(SETTINGS)?
                    .insert(SCHEMA_VERSION_KEY, 99u32.to_le_bytes().as_slice())?;
                Ok(())
            })
            .await
            .expect("write");
        drop(store);
        assert!(matches!(
            Store::open(dir.path(), 1 << 20),
            Err(StoreError::Schema { found: 99 })
        ));
    }

    #[tokio::test]
    async fn committed_writes_survive_reopening() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path(), 1 << 20).expect("open");
        store
            .write(|txn| {
                txn.open_table(tables::IMAGES)?.insert([7; 32], 3)?;
                Ok(())
            })
            .await
            .expect("write");
        drop(store);
        let store = Store::open(dir.path(), 1 << 20).expect("reopen");
        let count = store
            .read(|txn| {
                Ok(txn
                    .open_table(tables::IMAGES)?
                    .get([7; 32])?
                    .map(|v| v.value()))
            })
            .await
            .expect("read");
        assert_eq!(count, Some(3));
    }
}
