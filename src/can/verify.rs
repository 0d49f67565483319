//! Verifies an IPNS record the way today's IPFS nodes do (`spec/loc-can.md` appendix C): the
//! V2 signature over `data` decides, V1 fields must agree with `data`, the V1 signature is
//! never trusted.

use prost::Message as _;

use super::cbor::RecordData;
use super::multibase::{from_base58, from_multibase};
use super::record::v2_signed_bytes;
use super::time::parse_rfc3339;
use crate::crypto;
use crate::wire::can::{CanCryptoKey, KeyType};
use crate::wire::proto::ipns::IpnsEntry;

/// Largest record accepted.
pub(crate) const MAX_RECORD_BYTES: usize = 10 * 1024;

/// Why a record is not valid for a name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// Larger than [`MAX_RECORD_BYTES`].
    #[error("record larger than 10 KiB")]
    TooLarge,
    /// Not a protobuf `IpnsEntry`.
    #[error("not an IPNS record")]
    Undecodable,
    /// No V2 signature or no `data` (a V1-only record).
    #[error("no V2 signature")]
    NoSignatureV2,
    /// The name does not inline an Ed25519 key.
    #[error("the name does not carry an Ed25519 key")]
    UnusableName,
    /// `data` is not the canonical map.
    #[error("data is not the canonical DAG-CBOR map")]
    BadData,
    /// The V2 signature does not verify.
    #[error("V2 signature does not verify")]
    BadSignatureV2,
    /// A V1 field differs from its copy in `data`.
    #[error("V1 fields differ from data")]
    V1Mismatch,
    /// Unknown validity type, unparsable validity, or validity in the past.
    #[error("not valid at this time")]
    Expired,
}

/// Checks `record` against the IPNS `name` (`k…` base36 CID or `12D3KooW…` peer id) at
/// `now_ms`; returns the record's value when it is valid.
pub fn verify(name: &str, record: &[u8], now_ms: i64) -> Result<Vec<u8>, Invalid> {
    if record.len() > MAX_RECORD_BYTES {
        return Err(Invalid::TooLarge);
    }
    let entry = IpnsEntry::decode(record).map_err(|_| Invalid::Undecodable)?;
    let (Some(signature), Some(data_bytes)) = (&entry.signature_v2, &entry.data) else {
        return Err(Invalid::NoSignatureV2);
    };
    let public_key = key_of_name(name).ok_or(Invalid::UnusableName)?;
    let data = RecordData::decode(data_bytes).ok_or(Invalid::BadData)?;
    if !crypto::verify(&public_key, &v2_signed_bytes(data_bytes), signature) {
        return Err(Invalid::BadSignatureV2);
    }
    let agrees = |field: &Option<Vec<u8>>, copy: &[u8]| field.as_deref().is_none_or(|v| v == copy);
    let agrees_number = |field: Option<u64>, copy: u64| field.is_none_or(|v| v == copy);
    let validity_type = entry.validity_type.and_then(|t| u64::try_from(t).ok());
    if !(agrees(&entry.value, &data.value)
        && agrees(&entry.validity, &data.validity)
        && agrees_number(entry.sequence, data.sequence)
        && agrees_number(entry.ttl, data.ttl)
        && (entry.validity_type.is_none() || validity_type == Some(data.validity_type)))
    {
        return Err(Invalid::V1Mismatch);
    }
    let until = std::str::from_utf8(&data.validity)
        .ok()
        .and_then(parse_rfc3339)
        .filter(|_| data.validity_type == 0)
        .ok_or(Invalid::Expired)?;
    if until <= now_ms {
        return Err(Invalid::Expired);
    }
    Ok(data.value)
}

/// The Ed25519 key inlined in an IPNS name (`k…` or `12D3KooW…`), through its identity
/// multihash.
pub fn key_of_name(name: &str) -> Option<Vec<u8>> {
    let bytes = if name.starts_with('k') {
        let cid = from_multibase(name)?;
        // CIDv1, libp2p-key: the multihash follows.
        cid.strip_prefix(&[0x01, 0x72][..])?.to_vec()
    } else {
        from_base58(name)?
    };
    let (&code, rest) = bytes.split_first()?;
    let (&len, key) = rest.split_first()?;
    if code != 0x00 || usize::from(len) != key.len() {
        return None;
    }
    let key = CanCryptoKey::decode(key).ok()?;
    (key.r#type == i32::from(KeyType::Ed25519) && key.data.len() == 32).then_some(key.data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::can::record::{RECORD_TTL_NS, RecordFields, ipns_name};
    use crate::crypto::ServerKey;

    const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/ipns-records");
    /// 2026-11-28, well before the vectors expire (2123).
    const NOW_MS: i64 = 1_795_000_000_000;

    fn vector(case: &str) -> (String, Vec<u8>) {
        for entry in std::fs::read_dir(VECTORS).expect("vector directory") {
            let path = entry.expect("entry").path();
            let file = path
                .file_name()
                .and_then(|f| f.to_str())
                .unwrap_or_default()
                .to_owned();
            if let Some(name) = file.strip_suffix(&format!("_{case}.ipns-record")) {
                return (name.to_owned(), std::fs::read(&path).expect("vector"));
            }
        }
        panic!("no vector {case}");
    }

    #[test]
    fn the_six_public_vectors() {
        let expected: [(&str, Result<&[u8], Invalid>); 6] = [
            ("v1", Err(Invalid::NoSignatureV2)),
            ("v1-v2", Ok(b"/ipfs/bafkqaddwgevxmmraojswg33smq")),
            ("v1-v2-broken-v1-value", Err(Invalid::V1Mismatch)),
            ("v1-v2-broken-signature-v2", Err(Invalid::BadSignatureV2)),
            (
                "v1-v2-broken-signature-v1",
                Ok(b"/ipfs/bafkqahtwgevxmmrao5uxi2bamjzg623fnyqhg2lhnzqxi5lsmuqhmmi"),
            ),
            ("v2", Ok(b"/ipfs/bafkqadtwgiww63tmpeqhezldn5zgi")),
        ];
        for (case, verdict) in expected {
            let (name, record) = vector(case);
            let got = verify(&name, &record, NOW_MS);
            match verdict {
                Ok(value) => assert_eq!(got.as_deref(), Ok(value), "{case}"),
                Err(reason) => assert_eq!(got, Err(reason), "{case}"),
            }
        }
    }

    #[test]
    fn our_records_verify_and_tampering_is_caught() {
        let key = ServerKey::generate();
        let name = ipns_name(key.public_key());
        let fields = RecordFields {
            value: b"/ipfs/QmQ3gvw2XujomMbUnaZEypb3RRzQxa1NjTKgx1sghzP8zz".to_vec(),
            validity: b"2026-12-28T00:00:00.000Z".to_vec(),
            sequence: 7,
            ttl_ns: RECORD_TTL_NS,
        };
        let record = fields.sign_v1_v2(&key);
        assert_eq!(
            verify(&name, &record.encode_to_vec(), NOW_MS),
            Ok(fields.value.clone())
        );
        let mut later = record.clone();
        later.sequence = Some(8);
        assert_eq!(
            verify(&name, &later.encode_to_vec(), NOW_MS),
            Err(Invalid::V1Mismatch)
        );
        let other = ipns_name(ServerKey::generate().public_key());
        assert_eq!(
            verify(&other, &record.encode_to_vec(), NOW_MS),
            Err(Invalid::BadSignatureV2)
        );
        let expired_at = parse_rfc3339("2026-12-28T00:00:00Z").expect("time");
        assert_eq!(
            verify(&name, &record.encode_to_vec(), expired_at),
            Err(Invalid::Expired)
        );
        let v1_only = fields.sign_v1(&key).encode_to_vec();
        assert_eq!(verify(&name, &v1_only, NOW_MS), Err(Invalid::NoSignatureV2));
    }
}
