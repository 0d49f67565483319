//! The 5-byte frame header shared by the profile-server and LOC protocols (spec §1.1).
//!
//! A frame is a serialized `MessageWithHeader { fixed32 header = 1; Message body = 2; }`:
//! byte 0 is `0x0D`, bytes 1..5 the little-endian length of what follows, then field 2 holding the
//! message. Everything here is sans-I/O: callers read the header, ask [`body_len`] whether to go
//! on, and only then allocate the body.

use prost::Message;
use prost::bytes::Buf;
use prost::encoding::{DecodeContext, WireType, decode_key, encode_key, encode_varint, skip_field};

/// Byte 0 of every frame: the key of field 1 with wire type fixed32.
pub const MARKER: u8 = 0x0D;
/// Size of the fixed frame prefix.
pub const HEADER_LEN: usize = 5;
/// Largest whole frame, prefix included (spec §1.1).
pub const MAX_FRAME_LEN: usize = 1_048_576;
/// Largest value of the length field.
pub const MAX_BODY_LEN: usize = MAX_FRAME_LEN - HEADER_LEN;

/// Why a frame could not be read. Every variant is a protocol violation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// Byte 0 was not [`MARKER`].
    #[error("frame starts with 0x{0:02X} instead of 0x0D")]
    BadMarker(u8),
    /// The length field is above [`MAX_BODY_LEN`].
    #[error("frame body of {0} bytes exceeds the 1 MiB limit")]
    TooLarge(u32),
    /// The body is not a valid message.
    #[error("frame body does not parse: {0}")]
    Malformed(String),
}

/// Checks a frame header and returns the number of body bytes that follow it.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, FrameError> {
    if header[0] != MARKER {
        return Err(FrameError::BadMarker(header[0]));
    }
    let len = u32::from_le_bytes([header[1], header[2], header[3], header[4]]);
    let len_usize = usize::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    if len_usize > MAX_BODY_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len_usize)
}

/// Parses a frame body (the bytes after the header) into its message.
///
/// Unknown fields are skipped as protobuf requires; a missing field 2 gives the default message.
pub fn decode_body<M: Message + Default>(mut body: &[u8]) -> Result<M, FrameError> {
    let malformed = |e: prost::DecodeError| FrameError::Malformed(e.to_string());
    let mut message = M::default();
    while body.has_remaining() {
        let (tag, wire_type) = decode_key(&mut body).map_err(malformed)?;
        if tag == 2 && wire_type == WireType::LengthDelimited {
            prost::encoding::message::merge(
                wire_type,
                &mut message,
                &mut body,
                DecodeContext::default(),
            )
            .map_err(malformed)?;
        } else {
            skip_field(wire_type, tag, &mut body, DecodeContext::default()).map_err(malformed)?;
        }
    }
    Ok(message)
}

/// Serializes a message as one whole frame.
///
/// Callers keep messages under the 1 MiB limit; the writer does not split or check them.
pub fn encode<M: Message>(message: &M) -> Vec<u8> {
    let message_len = message.encoded_len();
    let mut frame = Vec::with_capacity(HEADER_LEN + 1 + 5 + message_len);
    frame.extend_from_slice(&[MARKER, 0, 0, 0, 0]);
    encode_key(2, WireType::LengthDelimited, &mut frame);
    encode_varint(message_len as u64, &mut frame);
    message.encode_raw(&mut frame);
    let body_len = u32::try_from(frame.len() - HEADER_LEN).unwrap_or(u32::MAX);
    frame[1..HEADER_LEN].copy_from_slice(&body_len.to_le_bytes());
    frame
}

/// Finds the first whole frame in a buffer of received bytes.
///
/// Returns `Ok(None)` while the frame is incomplete (not an error), and otherwise the decoded
/// message with the number of bytes it used.
pub fn split<M: Message + Default>(buffer: &[u8]) -> Result<Option<(M, usize)>, FrameError> {
    let Some(header) = buffer.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let len = body_len(header)?;
    let Some(body) = buffer.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, HEADER_LEN + len)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::wire::ps;

    /// PS00 "Ping frame F": id 1, version 1.0.0, payload "test".
    const PING_F: [u8; 26] = [
        0x0D, 0x15, 0, 0, 0, 0x12, 0x13, 0x08, 0x01, 0x12, 0x0F, 0x0A, 0x0D, 0x0A, 0x03, 0x01,
        0x00, 0x00, 0x12, 0x06, 0x0A, 0x04, 0x74, 0x65, 0x73, 0x74,
    ];

    fn ping(id: u32, payload: &[u8]) -> ps::Message {
        crate::wire::request::single(
            id,
            ps::single_request::RequestType::Ping(ps::PingRequest {
                payload: payload.to_vec(),
            }),
        )
    }

    #[test]
    fn encodes_the_ps00_ping_frame_byte_for_byte() {
        assert_eq!(encode(&ping(1, b"test")), PING_F);
    }

    #[test]
    fn decodes_the_ps00_ping_frame() {
        let (message, used) = split::<ps::Message>(&PING_F)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, PING_F.len());
        assert_eq!(message, ping(1, b"test"));
    }

    #[test]
    fn incomplete_is_not_an_error() {
        for cut in 0..PING_F.len() {
            assert_eq!(
                split::<ps::Message>(&PING_F[..cut]),
                Ok(None),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn header_checks() {
        assert_eq!(
            body_len(&[0x46, 0x84, 0x21, 0x46, 0x87]),
            Err(FrameError::BadMarker(0x46))
        );
        // PS00010: a 1 MiB payload gives length 1,048,604.
        assert_eq!(
            body_len(&[0x0D, 0x1C, 0x00, 0x10, 0x00]),
            Err(FrameError::TooLarge(1_048_604))
        );
        assert_eq!(body_len(&[0x0D, 0xFB, 0xFF, 0x0F, 0x00]), Ok(MAX_BODY_LEN));
        assert_eq!(
            body_len(&[0x0D, 0xFC, 0xFF, 0x0F, 0x00]),
            Err(FrameError::TooLarge(1_048_572))
        );
        assert_eq!(
            body_len(&[0x0D, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(FrameError::TooLarge(u32::MAX))
        );
        assert_eq!(body_len(&[0x0D, 0, 0, 0, 0]), Ok(0));
    }

    #[test]
    fn garbage_body_is_malformed() {
        let frame = [0x0D, 3, 0, 0, 0, 0x12, 0x7F, 0x00];
        assert!(matches!(
            split::<ps::Message>(&frame),
            Err(FrameError::Malformed(_))
        ));
    }

    #[test]
    fn largest_legal_frame_round_trips() {
        let overhead = encode(&ping(9, b"")).len();
        // A payload this large widens the nested length varints by 12 bytes in all.
        let payload = vec![b'a'; MAX_FRAME_LEN - overhead - 12];
        let frame = encode(&ping(9, &payload));
        assert_eq!(frame.len(), MAX_FRAME_LEN);
        let (message, _) = split::<ps::Message>(&frame)
            .expect("valid")
            .expect("complete");
        assert_eq!(message, ping(9, &payload));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = split::<ps::Message>(&bytes);
        }

        #[test]
        fn random_bodies_behind_a_valid_header_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..1024)
        ) {
            let mut frame = vec![MARKER];
            frame.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_le_bytes());
            frame.extend_from_slice(&body);
            let result = split::<ps::Message>(&frame);
            prop_assert!(!matches!(result, Ok(None)));
        }

        #[test]
        fn every_prefix_of_a_valid_frame_is_incomplete(
            id in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..300)
        ) {
            let frame = encode(&ping(id, &payload));
            for cut in 0..frame.len() {
                prop_assert_eq!(split::<ps::Message>(&frame[..cut]), Ok(None));
            }
            let decoded = split::<ps::Message>(&frame).expect("valid").expect("complete");
            prop_assert_eq!(decoded, (ping(id, &payload), frame.len()));
        }
    }
}
