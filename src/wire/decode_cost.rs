//! How much memory a message body costs once decoded, found without decoding it.
//!
//! A protobuf message can grow a lot in decoding: an empty element of a repeated message field
//! is two bytes on the wire and a whole struct in the decoded `Vec` (a 1 MiB frame of empty
//! `SharedProfileUpdateItem`s would decode into well over 100 MB). [`repeated_cost`] walks the
//! wire format, schema-free, and bounds the heap the decoded repeated elements take, so a frame
//! can be charged to the in-flight budget, or refused, before prost allocates anything.
//!
//! The walk treats every length-delimited payload that parses as a message as one, down to
//! [`MAX_DEPTH`]. Within one message, the first occurrence of a field number is free (a
//! singular field lives inline in its parent; its string or bytes are already counted by the
//! frame's own length); every further occurrence is an element of a repeated field and costs
//! [`ELEMENT_COST`]. The one element a repeated field may hold in each parent is left out; as
//! parents holding a repeated field are themselves elements (or the single top message), this
//! at most doubles the true cost, which the factor 2 in [`ELEMENT_COST`] covers together with a
//! `Vec`'s spare capacity. Unknown fields are skipped by prost and only over-count.

use std::mem::size_of;

use super::{can, ps};

/// Nesting the walk follows; the protocol's deepest message (a shared profile inside an update
/// item inside a request) sits at depth 8.
pub(crate) const MAX_DEPTH: usize = 12;

/// Largest element of any repeated field of the protocols this server decodes.
const LARGEST_ELEMENT: usize = max(&[
    size_of::<ps::SharedProfileUpdateItem>(),
    size_of::<ps::ProfileQueryInformation>(),
    size_of::<ps::IdentityRelationship>(),
    size_of::<ps::HostingPlan>(),
    size_of::<ps::HostingPlanParameter>(),
    size_of::<ps::ServerRole>(),
    size_of::<ps::ProfileStatsItem>(),
    size_of::<can::CanKeyValue>(),
    size_of::<String>(),
]);

/// What one element of a repeated field is charged: the largest element, doubled for a `Vec`'s
/// spare capacity and the uncounted first element of each field.
pub(crate) const ELEMENT_COST: usize = 2 * LARGEST_ELEMENT;

const fn max(sizes: &[usize]) -> usize {
    let mut largest = 0;
    let mut i = 0;
    while i < sizes.len() {
        if sizes[i] > largest {
            largest = sizes[i];
        }
        i += 1;
    }
    largest
}

/// Bytes the repeated elements of `body` take once decoded, on top of the body's own length.
pub fn repeated_cost(body: &[u8]) -> usize {
    walk(body, 0).unwrap_or(0)
}

/// Field numbers 1 to 15 are told apart; larger ones share one slot (an over-count only).
const SLOTS: usize = 16;

/// The cost of `bytes` read as a message, or `None` when they are not one.
fn walk(mut bytes: &[u8], depth: usize) -> Option<usize> {
    let mut seen = [false; SLOTS];
    let mut cost = 0usize;
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes)?;
        let field = key >> 3;
        if field == 0 {
            return None;
        }
        match key & 7 {
            0 => {
                read_varint(&mut bytes)?;
            }
            1 => bytes = bytes.get(8..)?,
            5 => bytes = bytes.get(4..)?,
            2 => {
                let len = usize::try_from(read_varint(&mut bytes)?).ok()?;
                let payload = bytes.get(..len)?;
                bytes = &bytes[len..];
                let slot = usize::try_from(field).map_or(0, |f| if f < SLOTS { f } else { 0 });
                if std::mem::replace(&mut seen[slot], true) {
                    cost = cost.saturating_add(ELEMENT_COST);
                }
                if depth + 1 < MAX_DEPTH {
                    cost = cost.saturating_add(walk(payload, depth + 1).unwrap_or(0));
                }
            }
            _ => return None,
        }
    }
    Some(cost)
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7F) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;
    use crate::wire::request;

    fn update(items: Vec<ps::SharedProfileUpdateItem>) -> Vec<u8> {
        request::conversation(
            7,
            Vec::new(),
            ps::conversation_request::RequestType::NeighborhoodSharedProfileUpdate(
                ps::NeighborhoodSharedProfileUpdateRequest { items },
            ),
        )
        .encode_to_vec()
    }

    fn delete(byte: u8) -> ps::SharedProfileUpdateItem {
        ps::SharedProfileUpdateItem {
            action_type: Some(ps::shared_profile_update_item::ActionType::Delete(
                ps::SharedProfileDeleteItem {
                    identity_network_id: vec![byte; 32],
                },
            )),
        }
    }

    #[test]
    fn a_message_without_repeated_fields_costs_nothing_extra() {
        let ping = request::single(
            1,
            ps::single_request::RequestType::Ping(ps::PingRequest {
                payload: vec![0xAB; 1000],
            }),
        );
        assert_eq!(repeated_cost(&ping.encode_to_vec()), 0);
    }

    #[test]
    fn every_element_after_the_first_is_charged() {
        let body = update((0..100).map(delete).collect());
        assert_eq!(repeated_cost(&body), 99 * ELEMENT_COST);
    }

    #[test]
    fn the_charge_covers_what_prost_allocates() {
        let body = update(vec![ps::SharedProfileUpdateItem::default(); 1000]);
        let decoded = ps::Message::decode(body.as_slice()).expect("valid");
        let held = match decoded.message_type {
            Some(ps::message::MessageType::Request(ps::Request {
                conversation_type: Some(ps::request::ConversationType::ConversationRequest(c)),
                ..
            })) => match c.request_type {
                Some(ps::conversation_request::RequestType::NeighborhoodSharedProfileUpdate(u)) => {
                    u.items.capacity() * size_of::<ps::SharedProfileUpdateItem>()
                }
                _ => panic!("not an update"),
            },
            _ => panic!("not a conversation request"),
        };
        assert!(
            repeated_cost(&body) >= held,
            "{} < {held}",
            repeated_cost(&body)
        );
    }

    #[test]
    fn an_amplification_frame_is_priced_at_its_decoded_size() {
        // 1 MiB of empty items: two wire bytes each.
        let body = update(vec![ps::SharedProfileUpdateItem::default(); 500_000]);
        assert!(repeated_cost(&body) > 100 * body.len());
    }

    #[test]
    fn bytes_that_are_not_a_message_cost_nothing_and_never_fail() {
        assert_eq!(repeated_cost(&[0xFF; 64]), 0);
        assert_eq!(repeated_cost(&[0x0A, 0x05, 0x01]), 0);
        assert_eq!(repeated_cost(&[]), 0);
    }
}
