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
use super::keys::{IDENTITY_FILE, TLS_CERT_FILE, TLS_KEY_FILE};
use super::{DATABASE_FILE, StoreError};

/// Why the data directory is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Opening {
    /// `run`: only a first start may create the database.
    Run,
    /// `init`: the operator asks on purpose for what is missing, a database included.
    Init,
}

/// Refuses to go on when creating the missing parts of `dir` would orphan or replace data.
pub(crate) fn check(dir: &Path, opening: Opening) -> Result<(), StoreError> {
    if let Some(closed) = closed_ancestor(dir) {
        return Err(StoreError::Corrupt {
            path: closed,
            reason: "cannot be entered by this user, so the data directory inside it cannot be \
                     reached: give the user search permission (x) on it, or move data_dir",
        });
    }
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

/// The directory on the way to `dir` that this user may not enter (search), if any: the
/// parent of the first path whose metadata is refused.
fn closed_ancestor(dir: &Path) -> Option<std::path::PathBuf> {
    let mut ancestors: Vec<&Path> = dir
        .ancestors()
        .filter(|path| !path.as_os_str().is_empty())
        .collect();
    ancestors.reverse();
    for path in ancestors {
        match fs::symlink_metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return path.parent().map(Path::to_path_buf);
            }
            Err(_) => return None,
        }
    }
    None
}

/// What `check-config` can tell about `dir` without changing it: `run` would not refuse it
/// ([`check`]), it is (or can be created as) a writable directory, and the key files in it are
/// readable. A probe file is written and removed to learn that the directory is writable.
pub fn inspect(dir: &Path) -> Result<(), StoreError> {
    check(dir, Opening::Run)?;
    // The directory, or the nearest existing ancestor it would be created in.
    let existing = dir
        .ancestors()
        .find(|path| !path.as_os_str().is_empty() && path.exists())
        .unwrap_or(Path::new("."));
    if !existing.is_dir() {
        return Err(StoreError::Corrupt {
            path: existing.to_path_buf(),
            reason: "is not a directory, so the data directory cannot be there",
        });
    }
    let probe = existing.join(format!(".iop-check-config-{}", std::process::id()));
    fs::write(&probe, b"").map_err(|e| StoreError::io(existing, e))?;
    fs::remove_file(&probe).map_err(|e| StoreError::io(&probe, e))?;
    for name in [IDENTITY_FILE, TLS_CERT_FILE, TLS_KEY_FILE] {
        let path = dir.join(name);
        match fs::File::open(&path) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io(&path, e)),
        }
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
    fn inspect_finds_what_run_would_refuse() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(inspect(&dir.path().join("new").join("data")).is_ok());
        let file = dir.path().join("file");
        fs::write(&file, b"x").expect("write");
        let error = inspect(&file.join("data")).expect_err("under a file");
        assert!(
            error.to_string().to_lowercase().contains("not a directory"),
            "{error}"
        );
        fs::write(dir.path().join(DATABASE_FILE), b"x").expect("write");
        assert!(inspect(dir.path()).is_err(), "data without identity.key");
        let left: Vec<_> = fs::read_dir(dir.path()).expect("list").collect();
        assert_eq!(left.len(), 2, "the probe file is removed");
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
