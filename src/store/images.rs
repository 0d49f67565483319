//! Image files, content-addressed by SHA-256 under `data_dir/images/ab/<hex>`, with reference
//! counts in the `IMAGES` table.
//!
//! Every change of a reference count happens under [`Store::images_lock`](super::Store) together
//! with the file work: files are written (temp, fsync, rename) before the transaction that
//! references them commits, and deleted only after the transaction that released them committed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::tables::IMAGES;
use super::{Store, StoreError};

/// Directory under the data directory that holds image files.
pub const IMAGES_DIR: &str = "images";

/// Path of the file holding the image with SHA-256 `hash`.
pub fn image_path(dir: &Path, hash: &[u8; 32]) -> PathBuf {
    let name = hex::encode(hash);
    dir.join(IMAGES_DIR).join(&name[..2]).join(name)
}

/// Writes an image file unless it exists already; durable when this returns.
pub fn write_image(dir: &Path, hash: &[u8; 32], data: &[u8]) -> Result<(), StoreError> {
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

/// Deletes an image file; a missing file is not an error.
pub fn delete_image(dir: &Path, hash: &[u8; 32]) {
    let path = image_path(dir, hash);
    if let Err(error) = fs::remove_file(&path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot delete unused image");
    }
}

/// Adds one reference to an image.
pub fn retain(txn: &WriteTransaction, hash: &[u8; 32]) -> Result<(), StoreError> {
    let mut table = txn.open_table(IMAGES)?;
    let count = table.get(hash)?.map_or(0, |v| v.value());
    table.insert(hash, count.saturating_add(1))?;
    Ok(())
}

/// Drops one reference; returns true when it was the last, so the file may go after commit.
pub fn release(txn: &WriteTransaction, hash: &[u8; 32]) -> Result<bool, StoreError> {
    let mut table = txn.open_table(IMAGES)?;
    let count = table.get(hash)?.map_or(0, |v| v.value());
    if count <= 1 {
        table.remove(hash)?;
        Ok(true)
    } else {
        table.insert(hash, count - 1)?;
        Ok(false)
    }
}

impl Store {
    /// Reads an image by hash; `None` when there is no such file.
    pub async fn image(&self, hash: [u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let path = image_path(self.dir(), &hash);
        tokio::task::spawn_blocking(move || match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(&path, e)),
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// Deletes image files no record references (left behind by a crash between a release and
    /// the file deletion, or by a write whose transaction never committed). Returns how many.
    pub async fn remove_unused_images(&self) -> Result<usize, StoreError> {
        let store = self.clone();
        super::run_blocking(move || {
            let _guard = store.lock_images();
            let root = store.dir().join(IMAGES_DIR);
            let txn = store.db.begin_read()?;
            let table = txn.open_table(IMAGES)?;
            let mut removed = 0;
            for file in image_files(&root) {
                let hash = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| <[u8; 32]>::try_from(hex::decode(n).ok()?).ok());
                let referenced = match hash {
                    Some(hash) => table.get(&hash)?.is_some(),
                    None => false,
                };
                if !referenced && fs::remove_file(&file).is_ok() {
                    removed += 1;
                }
            }
            Ok(removed)
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
