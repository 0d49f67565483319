//! Group commit: durable writes from many tasks share one fsync.
//!
//! Each [`Store::write`](super::Store::write) becomes a job in a bounded queue. Whoever finds no
//! batch running becomes the leader on the blocking pool and runs queued jobs in batches of up
//! to [`MAX_BATCH`]: first all in one redb transaction, committed with one fsync. When a job of
//! the batch fails, that transaction is rolled back and the batch runs again, every job in its
//! own transaction (so the failing one is rolled back alone): all but the last committed
//! without an fsync, the last one (or an empty transaction when the last one failed) committed
//! durably, which makes the whole batch durable at once. Jobs are therefore cloneable closures:
//! the shared attempt runs a copy.
//!
//! No job of a batch is answered before the batch is on disk. Jobs arriving while a batch runs
//! form the next one, so under load the number of fsyncs per write falls without any job ever
//! waiting for a timer; alone, a write costs one transaction and one fsync as before.
//!
//! A storage failure anywhere in a batch (beginning a transaction, a commit, the final fsync)
//! fails every job of the batch, including those whose fsync-less commit had succeeded: after
//! such a failure their changes may not be on disk, and a job is never answered "done" unless it
//! is. The batch runs under the image lock; the image files that committed jobs released are
//! deleted after the durable commit (see [`super::images`]).

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redb::{Durability, WriteTransaction};
use tokio::sync::{Semaphore, oneshot};

use super::{Store, StoreError};
use crate::metrics::Counter;

/// Most jobs committed together with one fsync.
pub(crate) const MAX_BATCH: usize = 64;
/// Most jobs queued or running at once; further writers wait for a slot.
pub(crate) const MAX_QUEUED: usize = 1024;

/// Images whose last reference a job dropped: deleted once its batch is durable.
pub(crate) type Released = Vec<[u8; 32]>;

/// A write's work: runs in a write transaction, may report images it released, and can be
/// copied so that a batch can run it twice (see the module notes).
pub(crate) trait Work<T>:
    FnOnce(&WriteTransaction, &mut Released) -> Result<T, StoreError> + Clone + Send + 'static
{
}

impl<T, F> Work<T> for F where
    F: FnOnce(&WriteTransaction, &mut Released) -> Result<T, StoreError> + Clone + Send + 'static
{
}

/// One queued write, its result type erased.
trait Job: Send {
    /// Runs the work in `txn`; true when it succeeded. With `again`, a copy of the work runs
    /// and the job can be run once more (after its transaction was rolled back); without, the
    /// work itself runs and the job is spent.
    fn run(&mut self, txn: &WriteTransaction, released: &mut Released, again: bool) -> bool;
    /// Answers the writer: its own result, or `failure` when the batch did not become durable.
    fn finish(self: Box<Self>, failure: Option<&StoreError>);
}

struct Pending<T, F> {
    work: Option<F>,
    value: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&WriteTransaction, &mut Released) -> Result<T, StoreError> + Clone + Send,
{
    fn run(&mut self, txn: &WriteTransaction, released: &mut Released, again: bool) -> bool {
        let work = if again {
            self.work.clone()
        } else {
            self.work.take()
        };
        let Some(work) = work else {
            return false;
        };
        let value = work(txn, released);
        let ok = value.is_ok();
        self.value = Some(value);
        ok
    }

    fn finish(self: Box<Self>, failure: Option<&StoreError>) {
        let value = match (self.value, failure) {
            (Some(Err(own)), _) => Err(own),
            (_, Some(failure)) => Err(StoreError::Batch(failure.to_string())),
            (Some(Ok(value)), None) => Ok(value),
            (None, None) => Err(StoreError::Batch("the write was not run".into())),
        };
        // The writer may have gone away (its connection closed); the write stands regardless.
        let _ = self.reply.send(value);
    }
}

/// The queue of durable writes and whether a leader is draining it.
pub(super) struct Batcher {
    queue: Mutex<Queue>,
    /// One permit per job queued or running.
    slots: Semaphore,
    /// Batches made durable (one fsync each), for `[metrics]`.
    batches: Counter,
}

impl Default for Batcher {
    fn default() -> Batcher {
        Batcher {
            queue: Mutex::default(),
            slots: Semaphore::new(MAX_QUEUED),
            batches: Counter::default(),
        }
    }
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Box<dyn Job>>,
    leading: bool,
}

impl Batcher {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store {
    /// How many write batches were made durable; each cost one fsync.
    pub(crate) fn write_batches(&self) -> u64 {
        self.shared.batcher.batches.get()
    }

    /// Queues `work` for the next durable batch and waits until that batch is on disk.
    pub(super) async fn write_grouped<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        let _slot = self
            .shared
            .batcher
            .slots
            .acquire()
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?;
        let started = Instant::now();
        let (reply, answer) = oneshot::channel();
        let lead = {
            let mut queue = self.shared.batcher.lock();
            queue.jobs.push_back(Box::new(Pending {
                work: Some(work),
                value: None,
                reply,
            }));
            !std::mem::replace(&mut queue.leading, true)
        };
        if lead {
            let store = Leader(self.downgrade());
            // Detached on purpose: the leader answers every job it takes, and this writer's
            // own answer comes through `answer` like everyone else's.
            drop(tokio::task::spawn_blocking(move || store.lead_batches()));
        }
        let value = answer
            .await
            .map_err(|_| StoreError::Task("the write batch was dropped".into()))?;
        // A measurement for the operator's metrics, not a decision: the real clock.
        self.shared.write_latency.observe(started.elapsed());
        value
    }

    /// Runs `batch` under the image lock, deletes what it released once durable, and returns
    /// why it failed, if it did.
    fn run_batch(&self, batch: &mut [Box<dyn Job>]) -> Option<StoreError> {
        let _images = self.lock_images();
        let mut released = Released::new();
        let failure = self.commit_batch(batch, &mut released).err();
        if failure.is_none() {
            self.shared.batcher.batches.increment();
            if let Err(error) = self.delete_released(&released) {
                // The release rows stay; the next sweep deletes the files.
                tracing::warn!(%error, "cannot delete released images");
            }
        }
        failure
    }

    /// Runs the batch and makes it durable: all jobs in one transaction when every one of
    /// them succeeds, else each in its own, so a failing job is rolled back alone.
    fn commit_batch(
        &self,
        batch: &mut [Box<dyn Job>],
        released: &mut Released,
    ) -> Result<(), StoreError> {
        let db = self.db()?;
        if batch.len() > 1 {
            let txn = db.begin_write()?;
            let mut shared = Released::new();
            if batch.iter_mut().all(|job| job.run(&txn, &mut shared, true)) {
                txn.commit()?;
                released.append(&mut shared);
                return Ok(());
            }
            txn.abort()?;
        }
        let last = batch.len().saturating_sub(1);
        // A commit without fsync that no durable commit has covered yet.
        let mut exposed = false;
        for (index, job) in batch.iter_mut().enumerate() {
            let mut txn = db.begin_write()?;
            let durability = if index == last {
                Durability::Immediate
            } else {
                Durability::None
            };
            set_durability(&mut txn, durability)?;
            let mut own = Released::new();
            if job.run(&txn, &mut own, false) {
                txn.commit()?;
                released.append(&mut own);
                exposed = index != last;
            } else {
                txn.abort()?;
            }
        }
        if exposed {
            let mut txn = db.begin_write()?;
            set_durability(&mut txn, Durability::Immediate)?;
            txn.commit()?;
        }
        Ok(())
    }
}

/// The leader's hold on the store: weak, so that the database closes as soon as the last
/// [`Store`] is dropped, even while a leader is stepping down.
struct Leader(super::WeakStore);

impl Leader {
    /// Runs batches until the queue is empty, then steps down.
    fn lead_batches(&self) {
        let batcher = &self.0.shared.batcher;
        let _step_down = StepDown(batcher);
        loop {
            let mut batch: Vec<Box<dyn Job>> = {
                let mut queue = batcher.lock();
                if queue.jobs.is_empty() {
                    queue.leading = false;
                    return;
                }
                let take = queue.jobs.len().min(MAX_BATCH);
                queue.jobs.drain(..take).collect()
            };
            // Every writer of the batch holds a store while it waits, unless it gave up.
            let failure = match self.0.upgrade() {
                Some(store) => store.run_batch(&mut batch),
                None => Some(StoreError::Unavailable),
            };
            // The store is released before anyone hears back, so a writer that closes the
            // store next finds the database closed.
            for job in batch {
                job.finish(failure.as_ref());
            }
        }
    }
}

/// Lets the next writer lead when a job panicked (a bug) and unwound out of the leader: the
/// jobs of that batch are dropped, so their writers get an error instead of waiting forever.
struct StepDown<'a>(&'a Batcher);

impl Drop for StepDown<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.lock().leading = false;
        }
    }
}

/// Sets a transaction's durability, mapping redb's error.
pub(super) fn set_durability(
    txn: &mut WriteTransaction,
    durability: Durability,
) -> Result<(), StoreError> {
    txn.set_durability(durability)
        .map_err(|e| StoreError::Database(redb::Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::images::{image_path, release, retain, write_image};
    use crate::store::tables::IMAGES;
    use redb::ReadableDatabase;
    use tokio::task::JoinHandle;

    fn count(store: &Store, hash: &[u8; 32]) -> Option<u32> {
        let txn = store.db().expect("db").begin_read().expect("read");
        let table = txn.open_table(IMAGES).expect("table");
        table.get(hash).expect("get").map(|v| v.value())
    }

    /// Waits until a leader runs and `jobs` jobs sit in the queue behind its batch.
    /// Every writer holds a slot from before it queues until it has its answer, so `jobs + 1`
    /// slots taken means this many writers exist: the leader's state left over from an earlier
    /// write cannot pass for it. Bounded by wall time: on a loaded CI machine the writer tasks
    /// may wait long for a thread.
    async fn wait_queued(store: &Store, jobs: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let batcher = &store.shared.batcher;
        while std::time::Instant::now() < deadline {
            let ready = {
                let queue = batcher.lock();
                let writers = MAX_QUEUED - batcher.slots.available_permits();
                queue.leading && queue.jobs.len() == jobs && writers == jobs + 1
            };
            if ready {
                return;
            }
            // A short sleep, not a yield: a yielding loop can keep the writer task it just
            // spawned (in this worker's LIFO slot) from running.
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        panic!("never {jobs} jobs queued");
    }

    /// Starts a grouped write on its own task.
    fn spawn_write<T, F>(store: &Store, work: F) -> JoinHandle<Result<T, StoreError>>
    where
        T: Send + 'static,
        F: Work<T>,
    {
        let store = store.clone();
        tokio::spawn(async move { store.write_grouped(work).await })
    }

    /// Queues 33 writes behind a stalled leader (one batch of 1, then one of 32); the writes
    /// whose key `fails` picks insert and then fail. Checks every answer and what is stored.
    // Holding the image lock across awaits is the point: it stalls the leader meanwhile.
    #[allow(clippy::await_holding_lock)]
    async fn batch_of_32(fails: fn(u8) -> bool) {
        let (_dir, store) = Store::open_temporary();
        let before = store.write_batches();
        // While the image lock is held, the first leader waits with the first job and every
        // later job piles up behind it.
        let guard = store.lock_images();
        let mut writes = Vec::new();
        for key in 0..33u8 {
            writes.push(spawn_write(&store, move |txn, _| {
                txn.open_table(IMAGES)?.insert(&[key; 32], u32::from(key))?;
                if fails(key) {
                    return Err(StoreError::Record("test"));
                }
                Ok(key)
            }));
            wait_queued(&store, usize::from(key)).await;
        }
        drop(guard);
        for (key, write) in (0..33u8).zip(writes) {
            let answer = write.await.expect("task");
            if fails(key) {
                assert!(matches!(answer, Err(StoreError::Record("test"))));
                assert_eq!(count(&store, &[key; 32]), None, "failed write {key} kept");
            } else {
                assert_eq!(answer.expect("write"), key);
                assert_eq!(count(&store, &[key; 32]), Some(u32::from(key)));
            }
        }
        assert_eq!(
            store.write_batches() - before,
            2,
            "one batch of 1, one of 32"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_share_one_transaction_and_fsync() {
        batch_of_32(|_| false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_write_in_a_batch_is_rolled_back_alone() {
        batch_of_32(|key| key % 5 == 3).await;
    }

    // Holding the image lock across awaits is the point: it stalls the leader meanwhile.
    #[allow(clippy::await_holding_lock)]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_image_released_and_referenced_again_in_one_batch_keeps_its_file() {
        let (dir, store) = Store::open_temporary();
        let hash = crate::crypto::sha256(b"image");
        write_image(dir.path(), &hash, b"image").expect("file");
        store
            .write(move |txn| retain(txn, &hash))
            .await
            .expect("first reference");
        let guard = store.lock_images();
        let first = spawn_write(&store, |_, _| Ok(()));
        wait_queued(&store, 0).await;
        let releasing = spawn_write(&store, move |txn, freed| {
            if release(txn, &hash)? {
                freed.push(hash);
            }
            Ok(())
        });
        wait_queued(&store, 1).await;
        let retaining = spawn_write(&store, move |txn, _| retain(txn, &hash));
        wait_queued(&store, 2).await;
        drop(guard);
        for write in [first, releasing, retaining] {
            write.await.expect("task").expect("write");
        }
        assert!(
            image_path(dir.path(), &hash).exists(),
            "file still referenced"
        );
        assert_eq!(count(&store, &hash), Some(1));
    }
}
