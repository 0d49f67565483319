//! Builders for response messages: status-only errors and bodies for successes.

use super::Status;
use super::ps::{self, conversation_response, message, response, single_response};

/// A response without a body: an error status with `details` (spec §1.2, §1.5).
pub fn error(id: u32, status: Status, details: &str) -> ps::Message {
    wrap(
        id,
        ps::Response {
            status: status as i32,
            details: details.to_owned(),
            ..Default::default()
        },
    )
}

/// A successful single response echoing the request's `version`.
pub fn single(id: u32, version: Vec<u8>, body: single_response::ResponseType) -> ps::Message {
    wrap(
        id,
        ps::Response {
            conversation_type: Some(response::ConversationType::SingleResponse(
                ps::SingleResponse {
                    version,
                    response_type: Some(body),
                },
            )),
            ..Default::default()
        },
    )
}

/// A successful conversation response carrying the server's `signature` (empty when none).
pub fn conversation(
    id: u32,
    signature: Vec<u8>,
    body: conversation_response::ResponseType,
) -> ps::Message {
    wrap(
        id,
        ps::Response {
            conversation_type: Some(response::ConversationType::ConversationResponse(
                ps::ConversationResponse {
                    signature,
                    response_type: Some(body),
                },
            )),
            ..Default::default()
        },
    )
}

fn wrap(id: u32, response: ps::Response) -> ps::Message {
    ps::Message {
        id,
        message_type: Some(message::MessageType::Response(response)),
    }
}
