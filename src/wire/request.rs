//! Builders for request messages, used by the server's own outgoing requests and by test clients.

use super::VERSION_1_0_0;
use super::ps::{self, conversation_request, message, request, single_request};

/// A single request with version 1.0.0.
pub fn single(id: u32, body: single_request::RequestType) -> ps::Message {
    ps::Message {
        id,
        message_type: Some(message::MessageType::Request(ps::Request {
            conversation_type: Some(request::ConversationType::SingleRequest(
                ps::SingleRequest {
                    version: VERSION_1_0_0.to_vec(),
                    request_type: Some(body),
                },
            )),
        })),
    }
}

/// A conversation request carrying `signature` (empty when the request needs none).
pub fn conversation(
    id: u32,
    signature: Vec<u8>,
    body: conversation_request::RequestType,
) -> ps::Message {
    ps::Message {
        id,
        message_type: Some(message::MessageType::Request(ps::Request {
            conversation_type: Some(request::ConversationType::ConversationRequest(
                ps::ConversationRequest {
                    signature,
                    request_type: Some(body),
                },
            )),
        })),
    }
}
