//! The observation socket: a read-only JSON snapshot of the running server on a unix socket,
//! which `iop-profile-server status` prints. Each connection gets one snapshot and is closed;
//! nothing is read from it, so a client can change nothing.

use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixListener;

use crate::context::{Ctx, LinkState};
use crate::hub::peer_health::{Failing, Side};
use crate::role::Role;
use crate::store::StoreError;

/// Where systemd puts the service's runtime directory (`RuntimeDirectory=`).
pub const SERVICE_RUNTIME_DIR: &str = "/run/iop-profile-server";
/// The group the package creates and the unit runs the service as (`Group=`): its members may
/// open the socket in the service's runtime directory, so `status` needs no root.
pub const SERVICE_STATUS_GROUP: &str = "iop-profile-server-status";
/// Longest wait for a snapshot, either side.
const WAIT: Duration = Duration::from_secs(5);
/// Largest snapshot a client reads.
const MAX_SNAPSHOT_BYTES: u64 = 64 * 1024;
/// Connections served at once; one is answered in milliseconds, so more than this at once
/// means something is holding them open.
const MAX_OBSERVERS: usize = 8;
/// How long a connection beyond [`MAX_OBSERVERS`] may hold the accepting loop.
const BUSY_WAIT: Duration = Duration::from_millis(100);
/// The whole answer to a connection beyond [`MAX_OBSERVERS`].
pub const BUSY: &str = "busy\n";

/// A used amount against its limit.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// In use now.
    pub used: u64,
    /// The configured limit.
    pub limit: u64,
}

/// Peer servers by state.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct Peers {
    /// Initialisation finished.
    pub initialized: u64,
    /// Initialisation under way.
    pub initializing: u64,
    /// Not answering: the last attempt to reach them failed (an initialisation for neighbours,
    /// a delivery for followers).
    pub not_answering: u64,
    /// Since when the longest of those has not answered (Unix ms).
    pub not_answering_since_unix_ms: Option<i64>,
}

/// One listening port.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Port {
    /// The bound port.
    pub port: u16,
    /// The roles it serves.
    pub roles: Vec<String>,
}

/// Everything `status` shows.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Snapshot {
    /// The server's version.
    pub version: String,
    /// SHA-256 of the server's public key, hex.
    pub network_id: String,
    /// Seconds since the server started.
    pub uptime_secs: u64,
    /// The ports and their roles.
    pub ports: Vec<Port>,
    /// Open connections against `limits.max_connections`.
    pub connections: Usage,
    /// Incoming frame bytes held against `limits.max_inflight_bytes`.
    pub inflight_bytes: Usage,
    /// Hosted identity rows (cancelled ones awaiting purge included).
    pub hosted: u64,
    /// Identities checked in now.
    pub online: u64,
    /// Cancelled agreements awaiting purge.
    pub cancelled: u64,
    /// Calls alive against `limits.max_relays`.
    pub relays: Usage,
    /// Cached search results against `limits.search_cache_bytes`.
    pub search_cache_bytes: Usage,
    /// Servers whose profiles we keep (`neighbours` in the JSON operators read).
    #[serde(rename = "neighbours")]
    pub neighbors: Peers,
    /// Servers that receive our profiles.
    pub followers: Peers,
    /// Neighbourhood actions waiting for delivery.
    pub queued_actions: u64,
    /// "off", "down" or "ok".
    pub loc: String,
    /// When the LOC link last changed state (Unix ms); `None`: not since the start.
    pub loc_changed_unix_ms: Option<i64>,
    /// "off", "down" or "ok".
    pub can: String,
    /// When the CAN link last changed state (Unix ms); `None`: not since the start.
    pub can_changed_unix_ms: Option<i64>,
    /// When the server's IPNS record was last published (Unix ms); `None`: not in this run.
    pub can_published_unix_ms: Option<i64>,
    /// The last call to the CAN node that failed (contact record, clients' objects, unpins,
    /// health checks): `command: message`, bounded and printable; `None`: none in this run.
    pub can_last_error: Option<String>,
    /// When that call failed (Unix ms).
    pub can_last_error_unix_ms: Option<i64>,
    /// The server's clock when the snapshot was taken (Unix ms).
    pub taken_unix_ms: i64,
}

fn link(state: LinkState) -> String {
    match state {
        LinkState::Off => "off",
        LinkState::Down => "down",
        LinkState::Up => "ok",
    }
    .to_owned()
}

fn usage(limit: usize, available: usize) -> Usage {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    let available = u64::try_from(available).unwrap_or(0);
    Usage {
        used: limit.saturating_sub(available),
        limit,
    }
}

fn peers(rows: &[([u8; 32], crate::store::records::PeerServer)], failing: Failing) -> Peers {
    let initialized = rows.iter().filter(|(_, row)| row.initialized).count();
    Peers {
        initialized: initialized as u64,
        initializing: (rows.len() - initialized) as u64,
        not_answering: failing.count,
        not_answering_since_unix_ms: failing.since_ms,
    }
}

/// The snapshot of `ctx` now.
pub(crate) async fn snapshot(ctx: &Ctx) -> Result<Snapshot, StoreError> {
    let limits = &ctx.config.limits;
    let (hosted, cancelled) = ctx.store.hosted_counts().await?;
    let can_error = ctx.peers.links.can_last_error();
    let ports = ctx
        .config
        .listeners
        .iter()
        .map(|listener| {
            let roles: Vec<Role> = listener.roles.iter().collect();
            Port {
                port: roles
                    .first()
                    .map_or(listener.port, |role| ctx.port_of(*role)),
                roles: roles.iter().map(ToString::to_string).collect(),
            }
        })
        .collect();
    Ok(Snapshot {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        network_id: ctx.key.network_id().to_string(),
        uptime_secs: ctx.started.elapsed().as_secs(),
        ports,
        connections: usage(
            limits.max_connections as usize,
            ctx.budgets.connections.available_permits(),
        ),
        inflight_bytes: usage(
            ctx.budgets.inflight.limit(),
            ctx.budgets.inflight.available(),
        ),
        hosted,
        online: ctx.hub.registry.online_count() as u64,
        cancelled,
        relays: Usage {
            used: ctx.hub.relays.count() as u64,
            limit: ctx.hub.relays.max() as u64,
        },
        search_cache_bytes: usage(
            limits.search_cache_bytes as usize,
            ctx.budgets.search_cache_bytes.available_permits(),
        ),
        neighbors: peers(
            &ctx.store.neighbors().await?,
            ctx.peers.health.failing(Side::Neighbor),
        ),
        followers: peers(
            &ctx.store.followers().await?,
            ctx.peers.health.failing(Side::Follower),
        ),
        queued_actions: ctx.store.queued_actions().await?,
        loc: link(ctx.peers.links.loc(crate::clock::unix_ms())),
        loc_changed_unix_ms: ctx.peers.links.loc_changed_ms(),
        can: link(ctx.peers.links.can()),
        can_changed_unix_ms: ctx.peers.links.can_changed_ms(),
        can_published_unix_ms: ctx.peers.links.can_published_ms(),
        can_last_error: can_error
            .as_ref()
            .map(|e| format!("{}: {}", e.command, e.message)),
        can_last_error_unix_ms: can_error.map(|e| e.at_ms),
        taken_unix_ms: crate::clock::unix_ms(),
    })
}

/// Serves snapshots on `path` until shutdown, [`MAX_OBSERVERS`] connections at a time, each
/// within [`WAIT`]; a connection beyond them is answered "busy" at once. A stale socket file
/// from an earlier run is replaced; the file is removed on shutdown.
pub(crate) async fn serve(ctx: Arc<Ctx>, path: PathBuf) {
    let _ = std::fs::remove_file(&path);
    let listener = match UnixListener::bind(&path) {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, path = %path.display(), "no observation socket: `status` will not answer");
            return;
        }
    };
    if let Err(error) = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)) {
        tracing::warn!(%error, path = %path.display(), "cannot set the observation socket's mode");
    }
    let observers = Arc::new(tokio::sync::Semaphore::new(MAX_OBSERVERS));
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut stream, _)) = accepted else {
            continue;
        };
        let Ok(observer) = Arc::clone(&observers).try_acquire_owned() else {
            // Its request is read first (briefly): closing on unread bytes would reset the
            // connection before the client reads the answer.
            let mut request = [0u8; 4];
            let _ = tokio::time::timeout(BUSY_WAIT, stream.read_exact(&mut request)).await;
            let _ = tokio::time::timeout(BUSY_WAIT, stream.write_all(BUSY.as_bytes())).await;
            continue;
        };
        let shared = Arc::clone(&ctx);
        ctx.spawn(async move {
            let _observer = observer;
            let _ = tokio::time::timeout(WAIT, answer(&shared, stream)).await;
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// Reads which format the client wants and writes the snapshot in it.
async fn answer(ctx: &Ctx, mut stream: tokio::net::UnixStream) {
    // The client names the format in its first bytes: "json", or anything else for text.
    let mut request = [0u8; 4];
    let json = stream.read_exact(&mut request).await.is_ok() && &request == b"json";
    let text = match snapshot(ctx).await {
        Ok(snapshot) if json => serde_json::to_string(&snapshot).unwrap_or_default(),
        Ok(snapshot) => render(&snapshot),
        Err(error) => format!("error: {error}\n"),
    };
    let _ = stream.write_all(text.as_bytes()).await;
}

/// Asks the server listening on `path` for a snapshot, as JSON or as text (blocking, for the
/// command line).
pub fn query(path: &Path, json: bool) -> std::io::Result<String> {
    let mut stream = std::os::unix::net::UnixStream::connect(path)?;
    stream.set_read_timeout(Some(WAIT))?;
    stream.write_all(if json { b"json" } else { b"text" })?;
    let mut text = String::new();
    stream.take(MAX_SNAPSHOT_BYTES).read_to_string(&mut text)?;
    Ok(text)
}

/// "ok, for 12 s" (since the last change) or "ok, since start".
fn link_line(state: &str, changed: Option<i64>, now: i64) -> String {
    match changed {
        Some(changed) => format!("{state}, for {}", ago(changed, now)),
        None if state == "off" => state.to_owned(),
        None => format!("{state}, since start"),
    }
}

fn can_line(snapshot: &Snapshot) -> String {
    let now = snapshot.taken_unix_ms;
    let mut state = link_line(&snapshot.can, snapshot.can_changed_unix_ms, now);
    if let (Some(error), Some(at)) = (&snapshot.can_last_error, snapshot.can_last_error_unix_ms) {
        state = format!("{state}; last error {} ago ({error})", ago(at, now));
    }
    match snapshot.can_published_unix_ms {
        Some(published) => format!(
            "{state}; contact record published {} ago",
            ago(published, now)
        ),
        None if snapshot.can == "off" => state,
        None => format!("{state}; contact record not published in this run"),
    }
}

/// A span of time for people: seconds, minutes or hours.
fn ago(then_ms: i64, now_ms: i64) -> String {
    let secs = now_ms.saturating_sub(then_ms).max(0) / 1000;
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// The snapshot for people: a few aligned lines.
pub fn render(snapshot: &Snapshot) -> String {
    let ports: Vec<String> = snapshot
        .ports
        .iter()
        .map(|p| format!("{} ({})", p.port, p.roles.join(", ")))
        .collect();
    let of = |usage: Usage| format!("{} of {}", usage.used, usage.limit);
    let now = snapshot.taken_unix_ms;
    let peers = |p: Peers| {
        let mut line = format!(
            "{} initialised, {} initialising",
            p.initialized, p.initializing
        );
        if let Some(since) = p.not_answering_since_unix_ms {
            let _ = write!(
                line,
                ", {} not answering for {}",
                p.not_answering,
                ago(since, now)
            );
        }
        line
    };
    let identities = format!(
        "{} hosted, {} online, {} cancelled",
        snapshot.hosted, snapshot.online, snapshot.cancelled
    );
    let lines = [
        ("network id", snapshot.network_id.clone()),
        ("version", snapshot.version.clone()),
        ("uptime", format!("{} s", snapshot.uptime_secs)),
        ("ports", ports.join("; ")),
        ("connections", of(snapshot.connections)),
        ("in-flight bytes", of(snapshot.inflight_bytes)),
        ("identities", identities),
        ("relays", of(snapshot.relays)),
        ("search cache", of(snapshot.search_cache_bytes)),
        ("neighbours", peers(snapshot.neighbors)),
        ("followers", peers(snapshot.followers)),
        ("queued actions", snapshot.queued_actions.to_string()),
        (
            "LOC",
            link_line(
                &snapshot.loc,
                snapshot.loc_changed_unix_ms,
                snapshot.taken_unix_ms,
            ),
        ),
        ("CAN", can_line(snapshot)),
    ];
    lines.iter().fold(String::new(), |mut out, (name, value)| {
        let _ = writeln!(out, "{name:<16}{value}");
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_say_how_long_they_have_been_in_their_state() {
        let now = 10_000_000;
        assert_eq!(link_line("off", None, now), "off");
        assert_eq!(link_line("down", None, now), "down, since start");
        assert_eq!(link_line("ok", Some(now - 12_000), now), "ok, for 12 s");
        assert_eq!(link_line("ok", Some(now - 600_000), now), "ok, for 10 min");
        assert_eq!(
            link_line("down", Some(now - 3 * 3_600_000), now),
            "down, for 3 h"
        );
    }
}
