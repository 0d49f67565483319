//! What a data directory holds, and when its missing parts may be created.
//!
//! A node's identity is `identity.key` (its network id is the SHA-256 of the public key and must
//! never change) and its data is the database with the image files. The server creates
//! whatever is missing on a first start, when the directory holds neither. Otherwise a missing
//! part means something went wrong (a lost file, a wrong mount, a restore that forgot one file),
//! and creating it anew would silently orphan or replace the rest: a new identity under the old
//! data, or an empty database whose start-up image sweep deletes every image. Those cases are
//! refused with the file named and the way to go on purpose.

use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use super::images::IMAGES_DIR;
use super::keys::IDENTITY_FILE;
use super::{DATABASE_FILE, StoreError};

/// Why the data directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// `run`: only a first start may create the database.
    Run,
    /// `init`: the operator asks on purpose for what is missing, a database included.
    Init,
}

/// Refuses to go on when creating the missing parts of `dir` would orphan or replace data.
pub fn check(dir: &Path, opening: Opening) -> Result<(), StoreError> {
    let identity = dir.join(IDENTITY_FILE);
    let database = dir.join(DATABASE_FILE);
    let has_identity = exists(&identity)?;
    let has_database = holds_bytes(&database)?;
    let has_images = has_entries(&dir.join(IMAGES_DIR))?;
    if !has_identity && (has_database || has_images) {
        return Err(StoreError::Corrupt {
            path: identity,
            reason: "missing, but the data directory holds this node's data: restore \
                     identity.key from a backup (the network id must never change), or move the \
                     data directory away to start a new node",
        });
    }
    if has_identity && !has_database && opening == Opening::Run {
        return Err(StoreError::Corrupt {
            path: database,
            reason: "missing or empty beside an existing identity.key: restore it from a \
                     backup, or run `iop-profile-server init` to go on with an empty database",
        });
    }
    Ok(())
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn holds_bytes(path: &Path) -> Result<bool, StoreError> {
    match fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len() > 0),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(path, e)),
    }
}

fn has_entries(dir: &Path) -> Result<bool, StoreError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io(dir, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(dir: &Path, opening: Opening) -> Option<String> {
        check(dir, opening).err().map(|e| e.to_string())
    }

    #[test]
    fn an_empty_directory_is_a_first_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(refused(dir.path(), Opening::Run), None);
        assert_eq!(refused(&dir.path().join("not-yet"), Opening::Run), None);
    }

    #[test]
    fn data_without_its_identity_is_refused_for_run_and_init() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(DATABASE_FILE), b"x").expect("write");
        for opening in [Opening::Run, Opening::Init] {
            let error = refused(dir.path(), opening).expect("refused");
            assert!(error.contains("identity.key: missing"), "{error}");
        }
        fs::remove_file(dir.path().join(DATABASE_FILE)).expect("remove");
        fs::create_dir_all(dir.path().join(IMAGES_DIR).join("ab")).expect("mkdir");
        assert!(refused(dir.path(), Opening::Run).is_some());
    }

    #[test]
    fn an_identity_without_its_database_needs_init() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join(IDENTITY_FILE), [7; 32]).expect("write");
        let error = refused(dir.path(), Opening::Run).expect("refused");
        assert!(
            error.contains("profile-server.redb: missing or empty"),
            "{error}"
        );
        assert!(error.contains("init"), "{error}");
        fs::write(dir.path().join(DATABASE_FILE), b"").expect("write");
        assert!(
            refused(dir.path(), Opening::Run).is_some(),
            "empty counts as missing"
        );
        assert_eq!(refused(dir.path(), Opening::Init), None);
        fs::write(dir.path().join(DATABASE_FILE), b"x").expect("write");
        assert_eq!(refused(dir.path(), Opening::Run), None);
    }
}
