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
use crate::role::RoleSet;

/// Pause after an accept error such as EMFILE, so a full file table does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One bound port with what it serves.
pub struct Port {
    /// The bound socket.
    pub listener: TcpListener,
    /// Roles served.
    pub roles: RoleSet,
    /// TLS acceptor, for ports that serve TLS roles.
    pub tls: Option<TlsAcceptor>,
}

/// Accepts connections until `shutdown`, spawning each on `tasks`.
pub async fn accept_loop(
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
                tracing::warn!(%error, port = local_port, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Beyond max_connections the accepted socket waits, unread and without a handshake, for
        // a slot; this port accepts nothing more meanwhile. An idle port holds no slot, so one
        // port can serve all max_connections.
        let permit = tokio::select! {
            () = shutdown.cancelled() => return,
            permit = Arc::clone(&ctx.connections).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let span =
            tracing::info_span!("conn", %peer, port = local_port, identity = tracing::field::Empty);
        let ctx = Arc::clone(&ctx);
        let tls = port.tls.clone();
        let roles = port.roles;
        let shutdown = shutdown.clone();
        tasks.spawn(
            async move {
                let end = handle(tcp, peer, tls, roles, ctx, shutdown).await;
                tracing::debug!(?end, "connection closed");
                drop(permit);
            }
            .instrument(span),
        );
    }
}

async fn handle(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    roles: RoleSet,
    ctx: Arc<Ctx>,
    shutdown: CancellationToken,
) -> End {
    let _ = tcp.set_nodelay(true);
    let timeouts = ctx.config.timeouts;
    let idle = timeouts.idle_for(roles);
    let setup = Setup {
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
