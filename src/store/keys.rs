//! The server's long-lived secrets in the data directory: its Ed25519 identity and its
//! self-signed TLS certificate. Created once, kept forever, never logged.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::StoreError;
use crate::crypto::ServerKey;

/// File holding the 32-byte Ed25519 secret seed (mode 0600).
pub(crate) const IDENTITY_FILE: &str = "identity.key";
/// File holding the DER TLS certificate.
pub(crate) const TLS_CERT_FILE: &str = "tls-cert.der";
/// File holding the DER (PKCS#8) TLS private key (mode 0600).
pub(crate) const TLS_KEY_FILE: &str = "tls-key.der";

/// The TLS certificate and its private key, both DER.
pub struct TlsMaterial {
    /// Self-signed certificate.
    pub cert_der: Vec<u8>,
    /// PKCS#8 private key.
    pub key_der: Vec<u8>,
}

/// Creates `dir` (mode 0700) if it is missing.
pub(crate) fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| StoreError::io(dir, e))?;
    }
    Ok(())
}

/// Loads the server key, creating and saving a new one on first start.
pub fn load_or_create_identity(dir: &Path) -> Result<ServerKey, StoreError> {
    let path = dir.join(IDENTITY_FILE);
    match fs::read(&path) {
        Ok(bytes) => {
            let seed: [u8; 32] = bytes
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt {
                    path: path.clone(),
                    reason: "identity key file must hold exactly 32 bytes",
                })?;
            Ok(ServerKey::from_seed(&seed))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = ServerKey::generate();
            write_secret_file(dir, IDENTITY_FILE, &key.seed())?;
            Ok(key)
        }
        Err(e) => Err(StoreError::io(&path, e)),
    }
}

/// Loads the TLS certificate and key, creating a self-signed pair on first start.
pub fn load_or_create_tls(dir: &Path) -> Result<TlsMaterial, StoreError> {
    let cert_path = dir.join(TLS_CERT_FILE);
    let key_path = dir.join(TLS_KEY_FILE);
    if cert_path.exists() && key_path.exists() {
        let cert_der = fs::read(&cert_path).map_err(|e| StoreError::io(&cert_path, e))?;
        let key_der = fs::read(&key_path).map_err(|e| StoreError::io(&key_path, e))?;
        return Ok(TlsMaterial { cert_der, key_der });
    }
    let generated = rcgen::generate_simple_self_signed(vec!["iop-profile-server".to_owned()])
        .map_err(|_| StoreError::Corrupt {
            path: cert_path.clone(),
            reason: "could not generate a self-signed certificate",
        })?;
    let material = TlsMaterial {
        cert_der: generated.cert.der().to_vec(),
        key_der: generated.signing_key.serialize_der(),
    };
    // Key first: a certificate without its key on disk would be useless after a crash.
    write_secret_file(dir, TLS_KEY_FILE, &material.key_der)?;
    write_secret_file(dir, TLS_CERT_FILE, &material.cert_der)?;
    Ok(material)
}

/// Writes a file atomically (temp file, fsync, rename, fsync the directory) with mode 0600.
fn write_secret_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let written = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .map_err(|e| StoreError::io(&temp, e))
        .and_then(|()| fs::rename(&temp, &path).map_err(|e| StoreError::io(&path, e)));
    if let Err(error) = written {
        // A full disk must not leave a half-written secret behind.
        let _ = fs::remove_file(&temp);
        return Err(error);
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_with_private_mode() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create_identity(dir.path()).expect("create");
        let second = load_or_create_identity(dir.path()).expect("load");
        assert_eq!(first.network_id(), second.network_id());
        let mode = fs::metadata(dir.path().join(IDENTITY_FILE))
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn truncated_identity_file_is_reported() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::write(dir.path().join(IDENTITY_FILE), [1, 2, 3]).expect("write");
        assert!(matches!(
            load_or_create_identity(dir.path()),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn tls_material_is_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create_tls(dir.path()).expect("create");
        let second = load_or_create_tls(dir.path()).expect("load");
        assert_eq!(first.cert_der, second.cert_der);
        assert_eq!(first.key_der, second.key_der);
    }

    #[test]
    fn a_secret_that_cannot_be_put_in_place_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        // The key's name is taken by a non-empty directory: the rename fails.
        fs::create_dir_all(dir.path().join(TLS_KEY_FILE).join("occupied")).expect("mkdir");
        assert!(load_or_create_tls(dir.path()).is_err());
        let left: Vec<_> = fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(TLS_KEY_FILE)]);
    }
}
