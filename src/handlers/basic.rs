//! Ping and ListRoles: the requests that need no conversation and no storage.

use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::wire::frame;
use crate::wire::ps::{self, single_response::ResponseType};

/// Longest Ping payload whose echo still fits in one frame: the answer's envelope (id,
/// status, version, clock and the field headers) takes at most 64 bytes of the body.
pub(crate) const MAX_PING_PAYLOAD: usize = frame::MAX_BODY_LEN - 64;

/// PingRequest: echoes the payload with the server clock in ms (spec §4.1). The proto asks for
/// at most 64 bytes and the reference server does not check; a payload whose echo would not
/// fit in a frame is refused as INVALID_VALUE "payload".
pub(crate) fn ping(request: ps::PingRequest, now: Now) -> Result<ResponseType, Reject> {
    if request.payload.len() > MAX_PING_PAYLOAD {
        return Err(Reject::invalid("payload"));
    }
    Ok(ResponseType::Ping(ps::PingResponse {
        payload: request.payload,
        clock: now.unix_ms,
    }))
}

/// ListRolesRequest: one entry per served role with its bound port (spec §4.2).
pub(crate) fn list_roles(ctx: &View) -> ResponseType {
    let roles = ctx
        .role_ports
        .iter()
        .map(|&(role, port)| ps::ServerRole {
            role: role.wire_value(),
            port: u32::from(port),
            is_tcp: true,
            is_tls: role.is_tls(),
        })
        .collect();
    ResponseType::ListRoles(ps::ListRolesResponse { roles })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{VERSION_1_0_0, response};

    fn now(unix_ms: i64) -> Now {
        Now {
            instant: tokio::time::Instant::now(),
            unix_ms,
        }
    }

    #[test]
    fn the_longest_echo_fits_in_a_frame() {
        let request = ps::PingRequest {
            payload: vec![0xFF; MAX_PING_PAYLOAD],
        };
        let body = ping(request, now(i64::MIN)).expect("answered");
        let answer = response::single(u32::MAX, VERSION_1_0_0.to_vec(), body);
        assert!(frame::encode(&answer).len() <= frame::MAX_FRAME_LEN);
    }

    #[test]
    fn a_payload_whose_echo_cannot_fit_is_invalid() {
        let request = ps::PingRequest {
            payload: vec![0; MAX_PING_PAYLOAD + 1],
        };
        let refused = ping(request, now(0)).expect_err("refused");
        assert_eq!(refused, Reject::invalid("payload"));
    }
}
