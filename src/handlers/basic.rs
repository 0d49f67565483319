//! Ping and ListRoles: the requests that need no conversation and no storage.

use crate::clock::Now;
use crate::context::Ctx;
use crate::wire::ps::{self, single_response::ResponseType};

/// PingRequest: echoes the payload with the server clock in ms (spec §4.1).
pub fn ping(request: ps::PingRequest, now: Now) -> ResponseType {
    ResponseType::Ping(ps::PingResponse {
        payload: request.payload,
        clock: now.unix_ms,
    })
}

/// ListRolesRequest: one entry per served role with its bound port (spec §4.2).
pub fn list_roles(ctx: &Ctx) -> ResponseType {
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
