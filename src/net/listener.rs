//! Accept loop of one listening port: connection permit, accept, TLS handshake, serve.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::connection::{self, End, Setup};
use crate::context::Ctx;
use crate::hub::AddressSlot;
use crate::log_gate::LogGate;
use crate::role::RoleSet;

/// Pause after an accept error such as EMFILE, so a full file table does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Refusals over the per-address limit that are logged, per minute.
static OVER_ADDRESS_LIMIT: LogGate = LogGate::new(6);
/// Accept errors that are logged, per minute.
static ACCEPT_FAILED: LogGate = LogGate::new(6);

/// One bound port with what it serves.
pub(crate) struct Port {
    /// The bound socket.
    pub listener: TcpListener,
    /// Roles served.
    pub roles: RoleSet,
    /// TLS acceptor, for ports that serve TLS roles.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections until `shutdown`, spawning each on `tasks`.
pub(crate) async fn accept_loop(
    port: Port,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let local_port = port.listener.local_addr().map_or(0, |a| a.port());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = port.listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                if let Some(held_back) = ACCEPT_FAILED.pass(Instant::now()) {
                    tracing::warn!(%error, port = local_port, held_back, "accept failed");
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // An IPv4 client on a dual-stack socket counts as its IPv4 address.
        let ip = peer.ip().to_canonical();
        let address_slot = if ctx.config.limits.exempt_loopback && ip.is_loopback() {
            None
        } else if let Some(slot) = ctx.hub.addresses.connect(ip, Instant::now()) {
            Some(slot)
        } else {
            if let Some(held_back) = OVER_ADDRESS_LIMIT.pass(Instant::now()) {
                tracing::warn!(
                    %peer,
                    held_back,
                    "connection refused: limits.max_connections_per_address reached"
                );
            }
            ctx.metrics.connections_refused.increment();
            drop(tcp);
            continue;
        };
        // Beyond max_connections the accepted socket waits, unread and without a handshake, for
        // a slot; this port accepts nothing more meanwhile. An idle port holds no slot, so one
        // port can serve all max_connections.
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = Arc::clone(&ctx.budgets.connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        ctx.metrics.connections_accepted.increment();
        let span =
            tracing::info_span!("conn", %peer, port = local_port, identity = tracing::field::Empty);
        let ctx = Arc::clone(&ctx);
        let tls = port.tls.clone();
        let roles = port.roles;
        let shutdown = shutdown.clone();
        tasks.spawn(
            async move {
                let end = handle(
                    tcp,
                    peer,
                    address_slot,
                    tls,
                    roles,
                    Arc::clone(&ctx),
                    shutdown,
                )
                .await;
                tracing::debug!(?end, "connection closed");
                ctx.metrics.connection_closed(end.index());
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    address_slot: Option<AddressSlot>,
    tls: Option<TlsAcceptor>,
    roles: RoleSet,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) -> End {
    let _ = tcp.set_nodelay(true);
    let timeouts = ctx.config.timeouts;
    let idle = timeouts.idle_for(roles);
    let setup = Setup {
        address_slot,
        remote: peer.ip().to_canonical(),
        roles,
        idle,
        session_end: Instant::now() + timeouts.session_max,
    };
    tracing::debug!(%peer, "accepted");
    let Some(acceptor) = tls else {
        return connection::serve(tcp, ctx, setup, shutdown).await;
    };
    // A client that never finishes the handshake is cut off like an idle one (spec §2.2).
    let handshake = timeouts.tls_handshake.min(idle);
    let stream = tokio::select! {
        () = shutdown.cancelled() => return End::Shutdown,
        result = timeout(handshake, acceptor.accept(tcp)) => match result {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return End::Io;
            }
            Err(_) => return End::Idle,
        },
    };
    connection::serve(stream, ctx, setup, shutdown).await
}
