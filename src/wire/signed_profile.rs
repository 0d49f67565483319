//! `SignedProfileInformation`, written by hand so that the profile stays the bytes its owner
//! signed (spec §3.4, §4.19).
//!
//! On the wire `profile` is a nested `ProfileInformation`; here it is kept as the encoded bytes
//! that arrived (or were stored), which a length-delimited field carries unchanged. A signature
//! is therefore checked over exactly the bytes received, and those bytes are what is stored,
//! served and forwarded: nothing signed is ever re-encoded. `build.rs` maps the proto message
//! here (`extern_path`), so every generated message holding one (search results, profile
//! answers, shared-profile items) uses this type.

use prost::Message as _;

use super::ps::ProfileInformation;

/// A profile with its owner's signature, the profile kept as encoded bytes.
#[derive(Clone, PartialEq, Eq, Hash, prost::Message)]
pub struct SignedProfileInformation {
    /// The encoded `ProfileInformation` exactly as signed (field 1, a message on the wire).
    #[prost(bytes = "vec", tag = "1")]
    pub profile: Vec<u8>,
    /// The owner's Ed25519 signature over `profile` (field 2).
    #[prost(bytes = "vec", tag = "2")]
    pub signature: Vec<u8>,
}

impl SignedProfileInformation {
    /// The profile decoded; `None` when its bytes are not a `ProfileInformation`.
    pub fn decode_profile(&self) -> Option<ProfileInformation> {
        ProfileInformation::decode(self.profile.as_slice()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_bytes_travel_unchanged_and_read_as_the_nested_message() {
        let profile = ProfileInformation {
            name: "Ann".into(),
            version: vec![1, 0, 0],
            ..ProfileInformation::default()
        };
        // An unknown field (tag 15) that a re-encoding through the generated type would drop.
        let mut bytes = profile.encode_to_vec();
        bytes.extend_from_slice(&[0x78, 0x01]);
        let signed = SignedProfileInformation {
            profile: bytes.clone(),
            signature: vec![7; 64],
        };
        let decoded = SignedProfileInformation::decode(signed.encode_to_vec().as_slice());
        let decoded = decoded.expect("decodes");
        assert_eq!(decoded.profile, bytes);
        assert_eq!(decoded.decode_profile().map(|p| p.name), Some("Ann".into()));
    }
}
