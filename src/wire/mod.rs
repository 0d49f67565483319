//! The protocol's bytes: generated protobuf types, framing and message builders.
//!
//! Pure code: no tokio, no storage, no clock. Everything above this module speaks in these types.

pub(crate) mod address;
pub mod decode_cost;
pub mod frame;
pub mod loc_envelope;
pub mod loc_service;
pub mod request;
pub mod response;
pub(crate) mod signed_profile;

/// Types generated from `proto/` at build time.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod proto {
    /// The `iop.*` protobuf packages.
    pub mod iop {
        /// Types shared by the IoP protocols.
        pub mod shared {
            include!(concat!(env!("OUT_DIR"), "/iop.shared.rs"));
        }
        /// CAN (IPFS fork) objects.
        pub mod can {
            include!(concat!(env!("OUT_DIR"), "/iop.can.rs"));
        }
        /// The profile-server protocol; `SignedProfileInformation` is the hand-written one of
        /// [`crate::wire::signed_profile`], which keeps the signed profile bytes as they are.
        pub mod profileserver {
            include!(concat!(env!("OUT_DIR"), "/iop.profileserver.rs"));
            pub use crate::wire::signed_profile::SignedProfileInformation;
        }
        /// Records kept in the database (not on the wire).
        pub mod store {
            include!(concat!(env!("OUT_DIR"), "/iop.store.rs"));
        }
        /// The LOC local-service protocol; `ServiceInfo` and `DeregisterServiceRequest` are the
        /// hand-written ones of [`crate::wire::loc_service`], which read both LOC generations.
        pub mod locnet {
            include!(concat!(env!("OUT_DIR"), "/iop.locnet.rs"));
            pub use crate::wire::loc_service::{DeregisterServiceRequest, ServiceInfo};
        }
    }
    /// The IPNS record of today's IPFS nodes (`proto/ipns.proto`).
    pub mod ipns {
        include!(concat!(env!("OUT_DIR"), "/ipns.rs"));
    }
}

pub use proto::iop::can;
pub use proto::iop::locnet as loc;
pub use proto::iop::profileserver as ps;
pub use proto::iop::shared::Status;

/// The only protocol version, 1.0.0 (spec §0).
pub(crate) const VERSION_1_0_0: [u8; 3] = [1, 0, 0];

/// Message id used when a frame could not be parsed and its id is unknown (spec §1.1).
pub const UNKNOWN_MESSAGE_ID: u32 = 0x0BAD_C0DE;

/// Spec §5.8: the type of placeholder profiles a sharing server sends for an identity it can no
/// longer load; never searchable, never signature-checked.
pub(crate) const INTERNAL_TYPE: &str = "<INTERNAL>";

/// Spec §4.19, §6: profiles one neighbour may share with us.
pub(crate) const MAX_SHARED_PROFILES: u32 = 20_000;

/// Spec §1.3: public keys are 1 to 128 bytes.
pub(crate) const MAX_PUBLIC_KEY_LEN: usize = 128;

/// Whether a latitude in micro-degrees is valid (spec §1.3).
pub(crate) fn is_valid_latitude(value: i32) -> bool {
    (-90_000_000..=90_000_000).contains(&value)
}

/// Whether a longitude in micro-degrees is valid; -180° is not (spec §1.3).
pub(crate) fn is_valid_longitude(value: i32) -> bool {
    (-179_999_999..=180_000_000).contains(&value)
}

/// Whether bytes form a valid VersionType: exactly 3 bytes, not 0.0.0 (spec §1.3).
pub(crate) fn is_valid_version(version: &[u8]) -> bool {
    version.len() == 3 && version != [0, 0, 0]
}
