//! Image files, content-addressed by SHA-256 under `data_dir/images/ab/<hex>`, with reference
//! counts in the `IMAGES` table.
//!
//! Every change of a reference count happens under [`Store::images_lock`](super::Store) together
//! with the file work: files are written (temp, fsync, rename) before the transaction that
//! references them commits, and deleted only after the transaction that released them committed
//! and recorded the release in `IMAGE_RELEASES`. Nothing else deletes an image file: a file
//! that no committed release names (an upload whose transaction never committed, or one the
//! tables lost track of) is reported by the sweep and left in place. A file read back is checked
//! against its hash; a missing or damaged one is served as no image.
//!
//! A reader that serves an older committed state with its images (a follower's snapshot, a
//! delivery window) holds an [`ImagePin`]: while one is held, released files stay on disk, and the
//! first deletion after the last pin went finishes every release that waited.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::tables::{IMAGE_RELEASES, IMAGES};
use super::{Store, StoreError};
use crate::crypto::sha256;

/// Directory under the data directory that holds image files.
pub(crate) const IMAGES_DIR: &str = "images";

/// Path of the file holding the image with SHA-256 `hash`.
pub fn image_path(dir: &Path, hash: &[u8; 32]) -> PathBuf {
    let name = hex::encode(hash);
    dir.join(IMAGES_DIR).join(&name[..2]).join(name)
}

/// Writes an image file unless it exists already; durable when this returns.
pub(crate) fn write_image(dir: &Path, hash: &[u8; 32], data: &[u8]) -> Result<(), StoreError> {
    let path = image_path(dir, hash);
    if path.exists() {
        return Ok(());
    }
    let parent = path.parent().unwrap_or(dir);
    fs::create_dir_all(parent).map_err(|e| StoreError::io(parent, e))?;
    let temp = path.with_extension("tmp");
    let mut file = fs::File::create(&temp).map_err(|e| StoreError::io(&temp, e))?;
    file.write_all(data)
        .and_then(|()| file.sync_all())
        .map_err(|e| StoreError::io(&temp, e))?;
    fs::rename(&temp, &path).map_err(|e| StoreError::io(&path, e))?;
    fs::File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(parent, e))
}

/// Deletes an image file; true when it is gone (a missing file counts as gone).
fn delete_image(dir: &Path, hash: &[u8; 32]) -> bool {
    let path = image_path(dir, hash);
    match fs::remove_file(&path) {
        Ok(()) => true,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => true,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot delete unused image");
            false
        }
    }
}

/// How many [`ImagePin`]s are held, and whether a release waited for them.
#[derive(Debug, Default)]
pub(super) struct Pins {
    held: AtomicUsize,
    deferred: AtomicBool,
}

/// While held, no released image file is deleted: the files of every state committed since the
/// pin was taken stay readable (see the module notes).
pub(crate) struct ImagePin {
    pins: Arc<super::Shared>,
}

impl Drop for ImagePin {
    fn drop(&mut self) {
        self.pins.image_pins.held.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Adds one reference to an image; an image referenced again is no longer released.
pub(crate) fn retain(txn: &WriteTransaction, hash: &[u8; 32]) -> Result<(), StoreError> {
    let mut table = txn.open_table(IMAGES)?;
    let count = table.get(hash)?.map_or(0, |v| v.value());
    table.insert(hash, count.saturating_add(1))?;
    txn.open_table(IMAGE_RELEASES)?.remove(hash)?;
    Ok(())
}

/// Drops one reference; when it was the last, records the release (in the same transaction)
/// and returns true: [`Store::delete_released`] may delete the file once this committed.
pub(crate) fn release(txn: &WriteTransaction, hash: &[u8; 32]) -> Result<bool, StoreError> {
    let mut table = txn.open_table(IMAGES)?;
    let count = table.get(hash)?.map_or(0, |v| v.value());
    if count <= 1 {
        table.remove(hash)?;
        txn.open_table(IMAGE_RELEASES)?.insert(hash, ())?;
        Ok(true)
    } else {
        table.insert(hash, count - 1)?;
        Ok(false)
    }
}

/// What an image sweep found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sweep {
    /// Released images whose files were deleted.
    pub deleted: usize,
    /// Files that neither a reference nor a committed release names, left in place.
    pub orphans: usize,
}

impl Store {
    /// Reads an image by hash; `None` when its file is missing or does not hash to `hash`
    /// (logged: the file was lost or damaged on disk).
    pub(crate) async fn image(&self, hash: [u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let path = image_path(self.dir(), &hash);
        tokio::task::spawn_blocking(move || match fs::read(&path) {
            Ok(data) if sha256(&data) == hash => Ok(Some(data)),
            Ok(_) => {
                tracing::error!(path = %path.display(), "image file is damaged; served as no image");
                Ok(None)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::error!(path = %path.display(), "image file is missing; served as no image");
                Ok(None)
            }
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Keeps every image file of the states committed from now on until the pin is dropped.
    /// Taken under the images lock, so no deletion is half-way when it starts.
    pub(crate) fn pin_images(&self) -> ImagePin {
        let _guard = self.lock_images();
        self.shared.image_pins.held.fetch_add(1, Ordering::SeqCst);
        ImagePin {
            pins: Arc::clone(&self.shared),
        }
    }

    /// Deletes the files of `released` images (their release committed) that nothing references
    /// again, and forgets those releases; while an [`ImagePin`] is held it deletes nothing and
    /// leaves the releases for the first call after the last pin. Called with the images lock
    /// held; the rows go without an fsync, since a lost removal only makes the next sweep
    /// delete an already missing file.
    pub(super) fn delete_released(&self, released: &[[u8; 32]]) -> Result<(), StoreError> {
        let pins = &self.shared.image_pins;
        if pins.held.load(Ordering::SeqCst) > 0 {
            if !released.is_empty() {
                pins.deferred.store(true, Ordering::SeqCst);
            }
            return Ok(());
        }
        let waited = pins.deferred.swap(false, Ordering::SeqCst);
        if released.is_empty() && !waited {
            return Ok(());
        }
        let mut txn = self.db()?.begin_write()?;
        super::group_commit::set_durability(&mut txn, redb::Durability::None)?;
        {
            let images = txn.open_table(IMAGES)?;
            let mut releases = txn.open_table(IMAGE_RELEASES)?;
            let mut released = released.to_vec();
            if waited {
                for entry in releases.iter()? {
                    released.push(entry?.0.value());
                }
            }
            for hash in &released {
                // A later write of the same batch may have referenced the image again.
                if images.get(hash)?.is_none() && delete_image(self.dir(), hash) {
                    releases.remove(hash)?;
                }
            }
        }
        txn.commit()?;
        Ok(())
    }

    /// Finishes releases a crash interrupted (deletes the files of released, unreferenced
    /// images), removes temporary files of interrupted uploads, and counts the image files
    /// nothing names, which it leaves in place.
    pub(crate) async fn sweep_images(&self) -> Result<Sweep, StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let _guard = store.lock_images();
            let released: Vec<[u8; 32]> = {
                let txn = store.db()?.begin_read()?;
                let releases = txn.open_table(IMAGE_RELEASES)?;
                let images = txn.open_table(IMAGES)?;
                let mut released = Vec::new();
                for row in releases.iter()? {
                    let hash = row?.0.value();
                    if images.get(&hash)?.is_none() {
                        released.push(hash);
                    }
                }
                released
            };
            store.delete_released(&released)?;
            let txn = store.db()?.begin_read()?;
            let images = txn.open_table(IMAGES)?;
            let mut orphans = 0;
            for file in image_files(&store.dir().join(IMAGES_DIR)) {
                if file.extension().is_some_and(|e| e == "tmp") {
                    // Written under the images lock, which this sweep holds: an upload that
                    // never completed.
                    let _ = fs::remove_file(&file);
                    continue;
                }
                let hash = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| <[u8; 32]>::try_from(hex::decode(n).ok()?).ok());
                let named = match hash {
                    Some(hash) => images.get(&hash)?.is_some(),
                    None => false,
                };
                if !named {
                    orphans += 1;
                }
            }
            Ok(Sweep {
                deleted: released.len(),
                orphans,
            })
        })
        .await
    }
}

/// Every file two levels below `root`.
fn image_files(root: &Path) -> Vec<PathBuf> {
    let Ok(prefixes) = fs::read_dir(root) else {
        return Vec::new();
    };
    prefixes
        .filter_map(Result::ok)
        .filter_map(|prefix| fs::read_dir(prefix.path()).ok())
        .flat_map(|files| files.filter_map(Result::ok).map(|f| f.path()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(store: &Store, work: impl FnOnce(&WriteTransaction) -> Result<(), StoreError>) {
        let txn = store.db().expect("db").begin_write().expect("txn");
        work(&txn).expect("work");
        txn.commit().expect("commit");
    }

    fn stored(store: &Store, data: &[u8]) -> [u8; 32] {
        let hash = sha256(data);
        write_image(store.dir(), &hash, data).expect("write");
        hash
    }

    #[tokio::test]
    async fn a_file_that_no_committed_release_names_is_left_in_place() {
        let (_dir, store) = Store::open_temporary();
        let hash = stored(&store, b"an upload whose transaction never committed");
        let sweep = store.sweep_images().await.expect("sweep");
        assert_eq!(
            sweep,
            Sweep {
                deleted: 0,
                orphans: 1
            }
        );
        assert!(image_path(store.dir(), &hash).exists());
    }

    #[tokio::test]
    async fn a_release_a_crash_interrupted_is_finished_by_the_sweep() {
        let (_dir, store) = Store::open_temporary();
        let hash = stored(&store, b"an image");
        commit(&store, |txn| retain(txn, &hash));
        // The release commits, then the process dies before deleting the file.
        commit(&store, |txn| release(txn, &hash).map(|last| assert!(last)));
        let sweep = store.sweep_images().await.expect("sweep");
        assert_eq!(
            sweep,
            Sweep {
                deleted: 1,
                orphans: 0
            }
        );
        assert!(!image_path(store.dir(), &hash).exists());
        let again = store.sweep_images().await.expect("sweep");
        assert_eq!(
            again,
            Sweep::default(),
            "the release is forgotten once done"
        );
    }

    #[tokio::test]
    async fn an_image_referenced_again_after_its_release_stays() {
        let (_dir, store) = Store::open_temporary();
        let hash = stored(&store, b"an image used twice");
        commit(&store, |txn| retain(txn, &hash));
        commit(&store, |txn| release(txn, &hash).map(drop));
        commit(&store, |txn| retain(txn, &hash));
        let sweep = store.sweep_images().await.expect("sweep");
        assert_eq!(sweep, Sweep::default());
        assert!(image_path(store.dir(), &hash).exists());
    }

    #[tokio::test]
    async fn a_missing_or_damaged_file_is_served_as_no_image() {
        let (_dir, store) = Store::open_temporary();
        let good = stored(&store, b"intact");
        assert_eq!(
            store.image(good).await.expect("read"),
            Some(b"intact".to_vec())
        );
        let damaged = sha256(b"what was uploaded");
        write_image(store.dir(), &damaged, b"what the disk returns").expect("write");
        assert_eq!(store.image(damaged).await.expect("read"), None);
        assert_eq!(
            store.image(sha256(b"never stored")).await.expect("read"),
            None
        );
    }
}
