//! Ping and ListRoles: the requests that need no conversation and no storage.

use std::time::{SystemTime, UNIX_EPOCH};

use super::reject::Reject;
use crate::context::Ctx;
use crate::wire::ps::{self, single_response::ResponseType};

/// PingRequest: echoes the payload with the server clock in ms (spec §4.1).
pub fn ping(request: ps::PingRequest) -> Result<ResponseType, Reject> {
    Ok(ResponseType::Ping(ps::PingResponse {
        payload: request.payload,
        clock: now_ms(),
    }))
}

/// ListRolesRequest: one entry per served role with its bound port (spec §4.2).
pub fn list_roles(ctx: &Ctx) -> Result<ResponseType, Reject> {
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
    Ok(ResponseType::ListRoles(ps::ListRolesResponse { roles }))
}

/// Milliseconds since the Unix epoch; 0 if the clock is before 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
