//! The redb database behind a handle that survives I/O failures.
//!
//! After a write fails (a full disk, typically), redb refuses every later write with "Previous
//! I/O error occurred" until the database is closed and opened again, while reads go on
//! working, so nothing else would notice. The backend here watches every write, length change
//! and sync; once one fails, the next caller of [`Handle::get`] closes the database (after the
//! transactions still using it end) and opens it again, at most once a second, until that
//! succeeds. The failure is logged once as an error, the recovery once as info.

use std::fmt;
use std::fs::OpenOptions;
use std::io;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use redb::backends::FileBackend;
use redb::{BackendError, Database, StorageBackend};

use super::StoreError;

/// How often a failed database may be reopened.
const REOPEN_INTERVAL: Duration = Duration::from_secs(1);
/// How long a reopen waits for the transactions still using the old database.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Opens the storage a database lives in.
pub(crate) type OpenBackend =
    Box<dyn Fn(&Path) -> io::Result<Box<dyn StorageBackend>> + Send + Sync>;

/// The production storage: the database file, created when missing.
pub(crate) fn file_backend() -> OpenBackend {
    Box::new(|path| Ok(Box::new(open_file(path)?)))
}

/// The database file as redb's file backend, created when missing.
fn open_file(path: &Path) -> io::Result<FileBackend> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    FileBackend::new(file).map_err(io::Error::other)
}

/// The open database, reopened after an I/O failure.
pub(crate) struct Handle {
    path: PathBuf,
    cache_bytes: usize,
    open_backend: OpenBackend,
    /// Set by the backend when a write, length change or sync failed.
    failed: Arc<AtomicBool>,
    state: Mutex<State>,
}

struct State {
    db: Option<Arc<Database>>,
    last_reopen: Option<Instant>,
    incident_logged: bool,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Opens (or creates) the database at `path`.
    pub(crate) fn open(
        path: &Path,
        cache_bytes: usize,
        open_backend: OpenBackend,
    ) -> Result<Handle, StoreError> {
        let handle = Handle {
            path: path.to_path_buf(),
            cache_bytes,
            open_backend,
            failed: Arc::new(AtomicBool::new(false)),
            state: Mutex::new(State {
                db: None,
                last_reopen: None,
                incident_logged: false,
            }),
        };
        let db = handle.create()?;
        handle.lock().db = Some(Arc::new(db));
        Ok(handle)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn create(&self) -> Result<Database, StoreError> {
        let inner = (self.open_backend)(&self.path).map_err(|e| StoreError::io(&self.path, e))?;
        let watched = Watched {
            inner,
            failed: Arc::clone(&self.failed),
        };
        Ok(Database::builder()
            .set_cache_size(self.cache_bytes)
            .create_with_backend(watched)?)
    }

    /// The database to use now. Blocking: after an I/O failure it first reopens the database,
    /// waiting for the transactions still using the old one.
    pub(crate) fn get(&self) -> Result<Arc<Database>, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.reopen();
        }
        self.lock().db.clone().ok_or(StoreError::Unavailable)
    }

    fn reopen(&self) {
        let mut state = self.lock();
        if !self.failed.load(Ordering::Acquire) {
            return;
        }
        if !state.incident_logged {
            tracing::error!(
                path = %self.path.display(),
                "a database write failed (is the disk full?); reopening the database"
            );
            state.incident_logged = true;
        }
        let now = Instant::now();
        if state
            .last_reopen
            .is_some_and(|at| now.duration_since(at) < REOPEN_INTERVAL)
        {
            return;
        }
        state.last_reopen = Some(now);
        if let Some(db) = state.db.take() {
            match wait_until_unused(db) {
                Ok(db) => drop(db),
                Err(db) => {
                    state.db = Some(db);
                    return;
                }
            }
        }
        // Cleared first: a failure while reopening must count as a new one.
        self.failed.store(false, Ordering::Release);
        match self.create() {
            Ok(db) => {
                state.db = Some(Arc::new(db));
                state.incident_logged = false;
                tracing::info!(path = %self.path.display(), "database reopened after the failure");
            }
            Err(error) => {
                self.failed.store(true, Ordering::Release);
                tracing::debug!(%error, "database cannot be reopened yet");
            }
        }
    }
}

/// The database itself once no transaction holds it any more, or back if one still does.
fn wait_until_unused(mut db: Arc<Database>) -> Result<Database, Arc<Database>> {
    let deadline = Instant::now() + DRAIN_WAIT;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => return Ok(db),
            Err(shared) if Instant::now() >= deadline => return Err(shared),
            Err(shared) => db = shared,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A backend that records whether a write, length change or sync failed.
#[derive(Debug)]
struct Watched {
    inner: Box<dyn StorageBackend>,
    failed: Arc<AtomicBool>,
}

impl Watched {
    fn watch<T>(&self, result: io::Result<T>) -> io::Result<T> {
        if result.is_err() {
            self.failed.store(true, Ordering::Release);
        }
        result
    }
}

impl StorageBackend for Watched {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.inner.read(offset, out)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.watch(self.inner.set_len(len))
    }

    fn sync_data(&self) -> io::Result<()> {
        self.watch(self.inner.sync_data())
    }

    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.watch(self.inner.write(offset, data))
    }

    fn close(&self) -> io::Result<()> {
        self.inner.close()
    }

    fn try_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.try_lock_range(start, end)
    }

    fn try_lock_shared_range(
        &self,
        start: Bound<u64>,
        end: Bound<u64>,
    ) -> Result<bool, BackendError> {
        self.inner.try_lock_shared_range(start, end)
    }

    fn lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_range(start, end)
    }

    fn lock_shared_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.lock_shared_range(start, end)
    }

    fn unlock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<(), BackendError> {
        self.inner.unlock_range(start, end)
    }

    fn query_lock_range(&self, start: Bound<u64>, end: Bound<u64>) -> Result<bool, BackendError> {
        self.inner.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, ReadableTable, TableDefinition};

    use super::*;

    const TABLE: TableDefinition<u32, u32> = TableDefinition::new("t");

    /// The database file on a disk that can be made full.
    #[derive(Debug)]
    struct FillableDisk {
        file: FileBackend,
        full: Arc<AtomicBool>,
    }

    impl FillableDisk {
        fn check(&self) -> io::Result<()> {
            if self.full.load(Ordering::Acquire) {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            Ok(())
        }
    }

    impl StorageBackend for FillableDisk {
        fn len(&self) -> io::Result<u64> {
            self.file.len()
        }
        fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
            self.file.read(offset, out)
        }
        fn set_len(&self, len: u64) -> io::Result<()> {
            self.check()?;
            self.file.set_len(len)
        }
        fn sync_data(&self) -> io::Result<()> {
            self.check()?;
            self.file.sync_data()
        }
        fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
            self.check()?;
            self.file.write(offset, data)
        }
    }

    fn on_fillable_disk(full: &Arc<AtomicBool>) -> OpenBackend {
        let full = Arc::clone(full);
        Box::new(move |path| {
            Ok(Box::new(FillableDisk {
                file: open_file(path)?,
                full: Arc::clone(&full),
            }))
        })
    }

    fn put(handle: &Handle, key: u32) -> Result<(), StoreError> {
        let txn = handle.get()?.begin_write()?;
        txn.open_table(TABLE)?.insert(key, key)?;
        txn.commit()?;
        Ok(())
    }

    fn stored(handle: &Handle) -> Vec<u32> {
        let txn = handle.get().expect("db").begin_read().expect("read");
        let table = txn.open_table(TABLE).expect("table");
        table
            .iter()
            .expect("iter")
            .map(|row| row.expect("row").0.value())
            .collect()
    }

    #[test]
    fn writes_work_again_once_the_disk_has_room() {
        let dir = tempfile::tempdir().expect("temp dir");
        let full = Arc::new(AtomicBool::new(false));
        let handle =
            Handle::open(&dir.path().join("db"), 1 << 20, on_fillable_disk(&full)).expect("open");
        put(&handle, 1).expect("first write");
        full.store(true, Ordering::Release);
        assert!(put(&handle, 2).is_err(), "the disk is full");
        full.store(false, Ordering::Release);
        put(&handle, 3).expect("the database was reopened");
        assert_eq!(stored(&handle), vec![1, 3]);
    }

    #[test]
    fn a_disk_that_stays_full_keeps_failing_without_losing_what_was_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let full = Arc::new(AtomicBool::new(false));
        let handle =
            Handle::open(&dir.path().join("db"), 1 << 20, on_fillable_disk(&full)).expect("open");
        put(&handle, 1).expect("first write");
        full.store(true, Ordering::Release);
        for key in 2..5 {
            assert!(put(&handle, key).is_err());
        }
        full.store(false, Ordering::Release);
        // A reopen is tried at most once a second; the next one after that succeeds.
        let deadline = Instant::now() + Duration::from_secs(5);
        while put(&handle, 9).is_err() {
            assert!(Instant::now() < deadline, "the database never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(stored(&handle), vec![1, 9]);
    }
}
