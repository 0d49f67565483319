//! A protocol answer that is not a success: the status and `details` that go on the wire.

use std::borrow::Cow;

use crate::store::StoreError;
use crate::wire::{Status, ps, response};

/// An error response. Internal causes are logged where they are mapped, never sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reject {
    /// Status code on the wire.
    pub status: Status,
    /// `Response.details`, e.g. the camelCase path of an invalid field.
    pub details: Cow<'static, str>,
    /// Close the connection after answering (always so for PROTOCOL_VIOLATION).
    pub close: bool,
}

impl Reject {
    fn new(status: Status, details: Cow<'static, str>) -> Reject {
        let close = status == Status::ErrorProtocolViolation;
        Reject {
            status,
            details,
            close,
        }
    }

    /// A rejection with no details.
    pub(crate) fn status(status: Status) -> Reject {
        Reject::new(status, Cow::Borrowed(""))
    }

    /// `status` with `details`.
    pub(crate) fn with_details(status: Status, details: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(status, details.into())
    }

    /// ERROR_INVALID_VALUE naming the offending field.
    pub(crate) fn invalid(field: impl Into<Cow<'static, str>>) -> Reject {
        Reject::new(Status::ErrorInvalidValue, field.into())
    }

    /// ERROR_PROTOCOL_VIOLATION with details; the connection will be closed.
    pub(crate) fn violation(details: &'static str) -> Reject {
        Reject::new(Status::ErrorProtocolViolation, Cow::Borrowed(details))
    }

    /// This rejection, and then close the connection.
    #[must_use]
    pub(crate) fn and_close(mut self) -> Reject {
        self.close = true;
        self
    }

    /// Whether answering this must end the connection (spec §1.4).
    pub(crate) fn closes_connection(&self) -> bool {
        self.close
    }

    /// The error response for request `id`.
    pub(crate) fn to_message(&self, id: u32) -> ps::Message {
        response::error(id, self.status, &self.details)
    }
}

impl From<StoreError> for Reject {
    fn from(error: StoreError) -> Reject {
        tracing::error!(%error, "storage failure while handling a request");
        Reject::status(Status::ErrorInternal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_close_the_connection_and_other_answers_keep_it() {
        assert!(Reject::violation("version").closes_connection());
        assert!(!Reject::invalid("name").closes_connection());
        assert!(
            Reject::status(Status::ErrorNotFound)
                .and_close()
                .closes_connection()
        );
    }

    #[test]
    fn the_message_carries_the_status_details_and_request_id() {
        let message = Reject::invalid("profile.name").to_message(9);
        assert_eq!(message.id, 9);
        let Some(ps::message::MessageType::Response(response)) = message.message_type else {
            panic!("a response");
        };
        assert_eq!(response.status, Status::ErrorInvalidValue as i32);
        assert_eq!(response.details, "profile.name");
    }
}
