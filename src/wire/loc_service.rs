//! LOC's `ServiceInfo` and `DeregisterServiceRequest`, written by hand because the two LOC
//! generations encode the service type differently (loc-can.md §1.6): LOC 1.x as the enum
//! `ServiceType`, a varint (`Profile = 11`), LOC 2.x as a string (`"Profile"`).
//!
//! `build.rs` maps both proto messages here (`extern_path`), so every generated LOC message that
//! holds one (`RegisterServiceRequest`, `NodeInfo.services`) reads either encoding and writes the
//! one it holds. A generated string field would instead fail the whole frame on a v1 varint.
//! Pure code, like the rest of `wire`; it knows nothing of what a profile server does with it.

use std::fmt;

use prost::DecodeError;
use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};

/// `ServiceType.PROFILE` of LOC 1.x (spec §7).
pub(crate) const PROFILE_CODE: u64 = 11;
/// The profile service's type in LOC 2.x, as the C# server's `docker` branch names it.
pub(crate) const PROFILE_NAME: &str = "Profile";

/// A service type in either LOC generation; each is written back the way it was read.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceType {
    /// LOC 2.x: a string, kept as bytes so that a peer's invalid UTF-8 fails nothing.
    Name(Vec<u8>),
    /// LOC 1.x: the enum value, a varint.
    Code(u64),
}

impl Default for ServiceType {
    /// The proto3 default: the empty string, which is not written.
    fn default() -> ServiceType {
        ServiceType::Name(Vec::new())
    }
}

impl fmt::Debug for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceType::Name(name) => write!(f, "Name({:?})", String::from_utf8_lossy(name)),
            ServiceType::Code(code) => write!(f, "Code({code})"),
        }
    }
}

impl ServiceType {
    /// The profile service as LOC 2.x names it: `"Profile"`.
    pub fn profile_name() -> ServiceType {
        ServiceType::Name(PROFILE_NAME.as_bytes().to_vec())
    }

    /// The profile service as LOC 1.x numbers it: 11.
    pub fn profile_code() -> ServiceType {
        ServiceType::Code(PROFILE_CODE)
    }

    /// Whether this is the profile service in either generation.
    pub(crate) fn is_profile(&self) -> bool {
        match self {
            ServiceType::Name(name) => name == PROFILE_NAME.as_bytes(),
            ServiceType::Code(code) => *code == PROFILE_CODE,
        }
    }
}

/// Field codec for a [`ServiceType`], shaped like prost's own (`encoding::uint32`, ...) so that
/// [`message!`] can use it. The proto3 defaults (empty name, code 0) are not written.
mod service_type {
    use super::{Buf, BufMut, DecodeContext, DecodeError, ServiceType, WireType, encoding};

    pub(super) fn encode(tag: u32, value: &ServiceType, buf: &mut impl BufMut) {
        match value {
            ServiceType::Name(name) if !name.is_empty() => encoding::bytes::encode(tag, name, buf),
            ServiceType::Code(code) if *code != 0 => encoding::uint64::encode(tag, code, buf),
            _ => {}
        }
    }

    pub(super) fn encoded_len(tag: u32, value: &ServiceType) -> usize {
        match value {
            ServiceType::Name(name) if !name.is_empty() => encoding::bytes::encoded_len(tag, name),
            ServiceType::Code(code) if *code != 0 => encoding::uint64::encoded_len(tag, code),
            _ => 0,
        }
    }

    /// A varint is a LOC 1.x code; anything else must be a LOC 2.x string. The last one wins.
    pub(super) fn merge(
        wire_type: WireType,
        value: &mut ServiceType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        if wire_type == WireType::Varint {
            let mut code = 0;
            encoding::uint64::merge(wire_type, &mut code, buf, ctx)?;
            *value = ServiceType::Code(code);
        } else {
            let mut name = Vec::new();
            encoding::bytes::merge(wire_type, &mut name, buf, ctx)?;
            *value = ServiceType::Name(name);
        }
        Ok(())
    }
}

/// Implements `prost::Message` for a proto3 message of singular fields, each given as
/// `tag => field as codec` with a codec module of prost's shape. Fields at their default are
/// not written; unknown fields are skipped.
macro_rules! message {
    ($name:ident { $($tag:literal => $field:ident as $($codec:ident)::+),+ $(,)? }) => {
        impl prost::Message for $name {
            fn encode_raw(&self, buf: &mut impl BufMut) {
                $(if !is_default(&self.$field) {
                    $($codec)::+::encode($tag, &self.$field, buf);
                })+
            }

            fn merge_field(
                &mut self,
                tag: u32,
                wire_type: WireType,
                buf: &mut impl Buf,
                ctx: DecodeContext,
            ) -> Result<(), DecodeError> {
                match tag {
                    $($tag => $($codec)::+::merge(wire_type, &mut self.$field, buf, ctx),)+
                    _ => encoding::skip_field(wire_type, tag, buf, ctx),
                }
            }

            fn encoded_len(&self) -> usize {
                0 $(+ if is_default(&self.$field) {
                    0
                } else {
                    $($codec)::+::encoded_len($tag, &self.$field)
                })+
            }

            fn clear(&mut self) {
                *self = $name::default();
            }
        }
    };
}

/// Whether a field holds its proto3 default, which is not written.
fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

/// `ServiceInfo { type = 1; uint32 port = 2; bytes service_data = 3 }` (loc-can.md §1.4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServiceInfo {
    /// The service type, in either generation.
    pub r#type: ServiceType,
    /// The service's TCP port (a profile server's primary port).
    pub port: u32,
    /// Service-defined data (a profile server's 32-byte network id).
    pub service_data: Vec<u8>,
}

message!(ServiceInfo {
    1 => r#type as service_type,
    2 => port as encoding::uint32,
    3 => service_data as encoding::bytes,
});

/// `DeregisterServiceRequest { service_type = 1 }` (loc-can.md §1.4).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DeregisterServiceRequest {
    /// The type of the service to remove, in either generation.
    pub service_type: ServiceType,
}

message!(DeregisterServiceRequest {
    1 => service_type as service_type,
});

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn profile(r#type: ServiceType) -> ServiceInfo {
        ServiceInfo {
            r#type,
            port: 16987,
            service_data: (0..32).collect(),
        }
    }

    /// loc-can.md appendix A: the ServiceInfo inside each RegisterService, v2 and v1.
    const V2: &str = "0a0750726f66696c6510db84011a20000102030405060708090a0b0c0d0e0f101112131415\
                      161718191a1b1c1d1e1f";
    const V1: &str = "080b10db84011a20000102030405060708090a0b0c0d0e0f101112131415161718191a1b\
                      1c1d1e1f";

    #[test]
    fn both_generations_round_trip_byte_for_byte() {
        for (hex_text, r#type) in [
            (V2, ServiceType::profile_name()),
            (V1, ServiceType::profile_code()),
        ] {
            let bytes = hex::decode(hex_text).expect("hex");
            let info = profile(r#type);
            assert_eq!(info.encode_to_vec(), bytes);
            assert_eq!(info.encoded_len(), bytes.len());
            let decoded = ServiceInfo::decode(bytes.as_slice()).expect("decodes");
            assert!(decoded.r#type.is_profile());
            assert_eq!(decoded, info);
        }
    }

    #[test]
    fn defaults_are_not_written_and_other_types_are_not_profile() {
        assert!(ServiceInfo::default().encode_to_vec().is_empty());
        let zero = ServiceInfo {
            r#type: ServiceType::Code(0),
            ..ServiceInfo::default()
        };
        assert!(zero.encode_to_vec().is_empty());
        for other in [
            ServiceType::Code(12),
            ServiceType::Name(b"profile".to_vec()),
            ServiceType::Name(vec![0xFF]),
            ServiceType::default(),
        ] {
            assert!(!other.is_profile(), "{other:?}");
        }
    }

    #[test]
    fn deregister_in_both_generations() {
        let v2 = DeregisterServiceRequest {
            service_type: ServiceType::profile_name(),
        };
        assert_eq!(hex::encode(v2.encode_to_vec()), "0a0750726f66696c65");
        let v1 = DeregisterServiceRequest::decode([0x08, 0x0B].as_slice()).expect("decodes");
        assert_eq!(v1.service_type, ServiceType::profile_code());
        assert_eq!(v1.encoded_len(), 2);
    }

    #[test]
    fn unknown_fields_are_skipped_and_odd_types_refused() {
        // Unknown field 9, then port 1.
        let info = ServiceInfo::decode([0x48, 0x05, 0x10, 0x01].as_slice()).expect("decodes");
        assert_eq!((info.r#type, info.port), (ServiceType::default(), 1));
        // The type as fixed32, and a string cut short.
        assert!(ServiceInfo::decode([0x0D, 1, 2, 3, 4].as_slice()).is_err());
        assert!(ServiceInfo::decode([0x0A, 0x05, b'a'].as_slice()).is_err());
    }
}
