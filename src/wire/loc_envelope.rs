//! Builders for LOC local-service envelopes (loc-can.md §1.3), used by the server's LOC client
//! and by the LOC stand-in of the tests: requests carry version 1.0.0, successful responses omit
//! their status. Which ids to use is the caller's business.

use super::VERSION_1_0_0;
use super::loc::local_service_request::LocalServiceRequestType;
use super::loc::local_service_response::LocalServiceResponseType;
use super::loc::message::MessageType;
use super::loc::{self, request, response};

/// A local-service request with version 1.0.0.
pub fn request(id: u32, body: LocalServiceRequestType) -> loc::Message {
    loc::Message {
        id,
        message_type: Some(MessageType::Request(loc::Request {
            version: VERSION_1_0_0.to_vec(),
            request_type: Some(request::RequestType::LocalService(
                loc::LocalServiceRequest {
                    local_service_request_type: Some(body),
                },
            )),
        })),
    }
}

/// A successful local-service response; the status (OK) is left out on the wire.
pub fn response(id: u32, body: LocalServiceResponseType) -> loc::Message {
    loc::Message {
        id,
        message_type: Some(MessageType::Response(loc::Response {
            response_type: Some(response::ResponseType::LocalService(
                loc::LocalServiceResponse {
                    local_service_response_type: Some(body),
                },
            )),
            ..loc::Response::default()
        })),
    }
}
