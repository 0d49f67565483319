//! Frames an attacker builds by hand: valid protobuf that decodes into far more memory than
//! it takes on the wire. Used by the hardening tests and the flood benchmark.

use iop_profile_server::wire::{frame, ps};
use prost::encoding::{WireType, decode_key, encode_key, encode_varint};

/// A body of `count` copies of `element`, as field `field` of a message nested in `path`
/// (outermost first): how an attacker builds an amplification frame by hand.
fn nested(path: &[u32], field: u32, element: &[u8], count: usize) -> Vec<u8> {
    let mut inner = Vec::with_capacity(count * (element.len() + 3));
    for _ in 0..count {
        encode_key(field, WireType::LengthDelimited, &mut inner);
        encode_varint(element.len() as u64, &mut inner);
        inner.extend_from_slice(element);
    }
    for &outer in path.iter().rev() {
        let mut wrapped = Vec::with_capacity(inner.len() + 8);
        encode_key(outer, WireType::LengthDelimited, &mut wrapped);
        encode_varint(inner.len() as u64, &mut wrapped);
        wrapped.extend_from_slice(&inner);
        inner = wrapped;
    }
    inner
}

/// Wraps a message body in the 5-byte header and the MessageWithHeader field 2.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut body = vec![0x12];
    encode_varint(message.len() as u64, &mut body);
    body.extend_from_slice(message);
    let mut frame = vec![frame::MARKER];
    frame.extend_from_slice(&u32::try_from(body.len()).expect("fits").to_le_bytes());
    frame.extend_from_slice(&body);
    frame
}

/// A count of 2-byte elements that keeps the frame just within 1 MiB.
const ELEMENTS: usize = 524_200;

/// Message.request(2).conversation_request(2).neighborhood_shared_profile_update(...) with
/// empty items.
pub fn empty_update_items() -> Vec<u8> {
    let field = ps::conversation_request::RequestType::NeighborhoodSharedProfileUpdate(
        ps::NeighborhoodSharedProfileUpdateRequest::default(),
    );
    let number = conversation_field_number(&field);
    framed(&nested(&[2, 2, number], 1, &[], ELEMENTS))
}

/// Message.response(3).single_response(...).profile_search(...) with empty profiles (field 4),
/// sent unasked.
pub fn unsolicited_search_results() -> Vec<u8> {
    let body =
        ps::single_response::ResponseType::ProfileSearch(ps::ProfileSearchResponse::default());
    let number = single_response_field_number(&body);
    framed(&nested(&[3, 8, number], 4, &[], ELEMENTS))
}

/// The field number an encoded oneof body starts with.
fn field_number(mut encoded: &[u8]) -> u32 {
    decode_key(&mut encoded).expect("a key").0
}

fn conversation_field_number(body: &ps::conversation_request::RequestType) -> u32 {
    let mut bytes = Vec::new();
    body.encode(&mut bytes);
    field_number(&bytes)
}

fn single_response_field_number(body: &ps::single_response::ResponseType) -> u32 {
    let mut bytes = Vec::new();
    body.encode(&mut bytes);
    field_number(&bytes)
}
