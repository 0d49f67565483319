//! Ed25519 signing and verification, network ids and randomness.
//!
//! Keys arrive from peers as arbitrary bytes; every function here treats them as untrusted and
//! answers `false` or an error instead of panicking.

use std::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// An identity's network id: SHA-256 of its raw public key (spec §0).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NetworkId(pub [u8; 32]);

impl NetworkId {
    /// The network id of a public key.
    pub(crate) fn of_key(public_key: &[u8]) -> NetworkId {
        NetworkId(sha256(public_key))
    }

    /// Reads a network id from wire bytes, which must be exactly 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<NetworkId> {
        bytes.try_into().ok().map(NetworkId)
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Whether `signature` is a valid Ed25519 signature of `message` by `public_key`.
///
/// Wrong key or signature lengths and keys that are not curve points all give `false`.
pub fn verify(public_key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key_bytes) = <&[u8; 32]>::try_from(public_key) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(key_bytes) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify(message, &signature).is_ok()
}

/// Fills an array with bytes from the operating system's CSPRNG.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The kernel's random source failing is not something the server can run without.
    getrandom::fill(&mut bytes).expect("the operating system's random source is unavailable");
    bytes
}

/// The server's own Ed25519 key pair.
#[derive(Clone)]
pub struct ServerKey {
    signing: SigningKey,
    public: [u8; 32],
    network_id: NetworkId,
}

impl ServerKey {
    /// A key pair from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> ServerKey {
        let signing = SigningKey::from_bytes(seed);
        let public = signing.verifying_key().to_bytes();
        ServerKey {
            signing,
            public,
            network_id: NetworkId::of_key(&public),
        }
    }

    /// A fresh random key pair.
    pub(crate) fn generate() -> ServerKey {
        ServerKey::from_seed(&random_bytes())
    }

    /// The secret seed, for storing the key.
    pub(crate) fn seed(&self) -> [u8; 32] {
        self.signing.to_bytes()
    }

    /// The raw 32-byte public key.
    pub(crate) fn public_key(&self) -> &[u8; 32] {
        &self.public
    }

    /// The server's network id.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }

    /// Signs `message`, returning the 64-byte signature.
    pub(crate) fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signing.sign(message).to_bytes().to_vec()
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret half.
        f.debug_struct("ServerKey")
            .field("network_id", &self.network_id)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let key = ServerKey::generate();
        let signature = key.sign(b"challenge");
        assert_eq!(signature.len(), 64);
        assert!(verify(key.public_key(), b"challenge", &signature));
        assert!(!verify(key.public_key(), b"challengf", &signature));
    }

    #[test]
    fn malformed_inputs_do_not_verify() {
        let key = ServerKey::generate();
        let signature = key.sign(b"m");
        assert!(!verify(&key.public_key()[..31], b"m", &signature));
        assert!(!verify(key.public_key(), b"m", &signature[..3]));
        assert!(!verify(key.public_key(), b"m", &[0x12; 200]));
        assert!(!verify(&[0xff; 32], b"m", &signature));
    }

    #[test]
    fn network_id_is_sha256_of_key() {
        let key = ServerKey::from_seed(&[7; 32]);
        assert_eq!(key.network_id().0, sha256(key.public_key()));
        assert_eq!(
            ServerKey::from_seed(&key.seed()).network_id(),
            key.network_id()
        );
        assert_eq!(
            hex::encode(sha256(b"test")),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
    }
}
