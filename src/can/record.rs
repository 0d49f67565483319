//! IPNS names and records: the IoP fork's V1 record (`CanIpnsEntry`) and the V1+V2 record
//! today's IPFS nodes accept (`spec/loc-can.md` §2.1 and appendix C).

use prost::Message as _;

use super::cbor::RecordData;
use super::multibase::{base36, base58};
use crate::crypto::{ServerKey, sha256};
use crate::wire::can::{CanCryptoKey, CanIpnsEntry, KeyType};
use crate::wire::proto::ipns::IpnsEntry;

/// How long resolvers may cache the server's record: 24 hours, in nanoseconds.
pub(crate) const RECORD_TTL_NS: u64 = 86_400 * 1_000_000_000;
/// What a V1 signature ends with after value and validity.
const V1_SUFFIX: &[u8] = b"EOL";
/// What a V2 signature starts with before the `data` bytes.
const V2_PREFIX: &[u8] = b"ipns-signature:";
/// Multicodec of a libp2p public key in a CIDv1.
const LIBP2P_KEY: u8 = 0x72;
/// Multihash code of SHA-256, and its digest length.
const SHA2_256: [u8; 2] = [0x12, 0x20];

/// The encoded `CanCryptoKey` (= libp2p `PublicKey`) of an Ed25519 public key.
pub(crate) fn crypto_key(public_key: &[u8]) -> Vec<u8> {
    CanCryptoKey {
        r#type: KeyType::Ed25519.into(),
        data: public_key.to_vec(),
    }
    .encode_to_vec()
}

/// The IoP fork's id for a key: the SHA-256 multihash of its `CanCryptoKey`, in base58 (`Qm…`).
pub(crate) fn can_id(public_key: &[u8]) -> String {
    let mut multihash = SHA2_256.to_vec();
    multihash.extend(sha256(&crypto_key(public_key)));
    base58(&multihash)
}

/// The name today's IPFS nodes use for a key: a CIDv1 (libp2p-key) of the identity multihash
/// over its `CanCryptoKey`, in base36 with the `k` prefix.
pub fn ipns_name(public_key: &[u8]) -> String {
    let key = crypto_key(public_key);
    let mut cid = vec![0x01, LIBP2P_KEY, 0x00];
    // Ed25519 keys encode to 36 bytes, below the one-byte varint limit; larger keys are not
    // inlined.
    cid.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    cid.extend(key);
    format!("k{}", base36(&cid))
}

/// The libp2p peer id of an Ed25519 key, base58 (`12D3KooW…`): the same name as
/// [`ipns_name`] in the form every node resolves (js-ipfs takes a `k…` name for a DNS name).
pub fn peer_id(public_key: &[u8]) -> String {
    let key = crypto_key(public_key);
    let mut multihash = vec![0x00, u8::try_from(key.len()).unwrap_or(u8::MAX)];
    multihash.extend(key);
    base58(&multihash)
}

/// The IPFS path of an object's multihash: `/ipfs/Qm…`.
pub(crate) fn ipfs_path(hash: &[u8]) -> String {
    format!("/ipfs/{}", base58(hash))
}

/// The content of a record before it is signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordFields {
    /// The path the name points to (`/ipfs/…`).
    pub value: Vec<u8>,
    /// End of validity, RFC 3339 text.
    pub validity: Vec<u8>,
    /// Must grow with every publication.
    pub sequence: u64,
    /// Cache time in nanoseconds.
    pub ttl_ns: u64,
}

/// The bytes a V1 signature covers: value ‖ validity ‖ "EOL".
pub(crate) fn v1_signed_bytes(value: &[u8], validity: &[u8]) -> Vec<u8> {
    [value, validity, V1_SUFFIX].concat()
}

/// The bytes a V2 signature covers: "ipns-signature:" ‖ data.
pub(crate) fn v2_signed_bytes(data: &[u8]) -> Vec<u8> {
    [V2_PREFIX, data].concat()
}

impl RecordFields {
    /// The V1 record the IoP fork's `name/upload` takes, signed with `key`.
    pub(crate) fn sign_v1(&self, key: &ServerKey) -> CanIpnsEntry {
        CanIpnsEntry {
            value: self.value.clone(),
            signature: key.sign(&v1_signed_bytes(&self.value, &self.validity)),
            validity_type: 0,
            validity: self.validity.clone(),
            sequence: self.sequence,
            ttl: self.ttl_ns,
            ..CanIpnsEntry::default()
        }
    }

    /// The V1+V2 record stock IPFS nodes take (V1 kept for older software), signed with `key`.
    pub fn sign_v1_v2(&self, key: &ServerKey) -> IpnsEntry {
        let data = RecordData {
            value: self.value.clone(),
            validity: self.validity.clone(),
            validity_type: 0,
            sequence: self.sequence,
            ttl: self.ttl_ns,
        }
        .encode();
        IpnsEntry {
            value: Some(self.value.clone()),
            signature_v1: Some(key.sign(&v1_signed_bytes(&self.value, &self.validity))),
            validity_type: Some(0),
            validity: Some(self.validity.clone()),
            sequence: Some(self.sequence),
            ttl: Some(self.ttl_ns),
            pub_key: None,
            signature_v2: Some(key.sign(&v2_signed_bytes(&data))),
            data: Some(data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::can::multibase::{base64url_padded, from_base58};

    /// Appendix B.2: the key of seed 00 01 … 1f.
    fn appendix_key() -> ServerKey {
        let seed: [u8; 32] = std::array::from_fn(|i| u8::try_from(i).expect("below 32"));
        ServerKey::from_seed(&seed)
    }

    #[test]
    fn the_peer_id_names_the_same_key_as_the_ipns_name() {
        let key = appendix_key();
        let id = peer_id(key.public_key());
        assert!(id.starts_with("12D3KooW"), "{id}");
        let named = crate::can::verify::key_of_name(&id);
        assert_eq!(named.as_deref(), Some(&key.public_key()[..]));
        let same = crate::can::verify::key_of_name(&ipns_name(key.public_key()));
        assert_eq!(named, same);
    }

    #[test]
    fn appendix_b2_ids() {
        let key = appendix_key();
        assert_eq!(
            hex::encode(crypto_key(key.public_key())),
            "0801122003a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
        );
        assert_eq!(
            can_id(key.public_key()),
            "QmUdQquZRaD33DM8PxUJ3QMinSZTJ2h6JXQj5hhJs4ruZY"
        );
    }

    #[test]
    fn appendix_b2_upload_record() {
        let hash = from_base58("QmQ3gvw2XujomMbUnaZEypb3RRzQxa1NjTKgx1sghzP8zz").expect("hash");
        let fields = RecordFields {
            value: ipfs_path(&hash).into_bytes(),
            validity: b"2026-12-22T00:00:00.000Z".to_vec(),
            sequence: 1,
            ttl_ns: RECORD_TTL_NS,
        };
        let record = fields.sign_v1(&appendix_key()).encode_to_vec();
        assert_eq!(
            hex::encode(&record),
            "0a342f697066732f516d51336776773258756a6f6d4d62556e615a457970623352527a517861314e6a544b6778317367687a50387a7a1240d5bb3bdc476819ce4f6c1b3e0ab6825dccc1e4b4d349db5f5686cab5981f7407a8e0f34ff1b7266d332139d626414f1b15383e04e015150c62f573f06a7d0d092218323032362d31322d32325430303a30303a30302e3030305a2801308080bc8ac9d213"
        );
        assert_eq!(
            format!("U{}", base64url_padded(&record)),
            "UCjQvaXBmcy9RbVEzZ3Z3Mlh1am9tTWJVbmFaRXlwYjNSUnpReGExTmpUS2d4MXNnaHpQOHp6EkDVuzvcR2gZzk9sGz4KtoJdzMHktNNJ219Whsq1mB90B6jg80_xtyZtMyE51iZBTxsVOD4E4BUVDGL1c_BqfQ0JIhgyMDI2LTEyLTIyVDAwOjAwOjAwLjAwMFooATCAgLyKydIT"
        );
    }

    #[test]
    fn ipns_name_is_a_base36_cidv1_of_the_inlined_key() {
        let name = ipns_name(appendix_key().public_key());
        assert!(name.starts_with("k51qzi5uqu5d"), "{name}");
        let cid = crate::can::multibase::from_multibase(&name).expect("base36");
        assert_eq!(&cid[..4], &[0x01, 0x72, 0x00, 36]);
        assert_eq!(
            &cid[4..],
            crypto_key(appendix_key().public_key()).as_slice()
        );
    }
}
