//! Neighbourhood requests a server sends us on srNeighbor (spec §4.19): a follower starting its
//! initialisation or stopping, a neighbour sharing profile updates. The snapshot a new follower
//! receives is streamed by `peers` over the follower's own connection; the updates a neighbour
//! shares are checked and stored by the catalog.

use super::ConversationBody;
use super::reject::Reject;
use crate::catalog::Received;
use crate::clock::Now;
use crate::config::is_public;
use crate::context::{NewFollower, View};
use crate::hub::addresses::Quota;
use crate::hub::{Candidate, Side};
use crate::log_gate::LogGate;
use crate::neighborhood::receiving::Phase;
use crate::session::{Peer, Session};
use crate::store::followers::StartOutcome;
use crate::store::records::PeerServer;
use crate::wire::Status;
use crate::wire::address::{ip_address, ip_bytes};
use crate::wire::ps::{self, conversation_response::ResponseType};

/// Followers may start as often as they like (within their quota): their lines are rationed.
static FOLLOWERS_STARTED: LogGate = LogGate::new(30);
static FOLLOWER_STARTS_REFUSED: LogGate = LogGate::new(6);

/// StartNeighborhoodInitializationRequest: checks in the order of spec §4.19, records the
/// follower and starts streaming our hosted profiles to it on this connection.
pub(crate) async fn start_neighborhood_initialization(
    ctx: &View,
    session: &mut Session,
    peer: Peer,
    request: &ps::StartNeighborhoodInitializationRequest,
) -> Result<ConversationBody, Reject> {
    let peer = peer.id;
    ctx.peers.health.showed_life(peer.0);
    let port = |value: u32, field: &'static str| {
        u16::try_from(value)
            .ok()
            .filter(|&p| p != 0)
            .ok_or(Reject::invalid(field))
    };
    let primary_port = port(request.primary_port, "primaryPort")?;
    let sr_neighbor_port = port(request.sr_neighbor_port, "srNeighborPort")?;
    let address = follower_address(&request.ip_address, session.remote, ctx.config.test_mode)
        .ok_or(Reject::invalid("ipAddress"))?;
    let record = PeerServer {
        ip_address: ip_bytes(address),
        primary_port: u32::from(primary_port),
        sr_neighbor_port: u32::from(sr_neighbor_port),
        ..PeerServer::default()
    };
    let instant = tokio::time::Instant::now();
    if let Some(slot) = &session.address
        && !ctx.hub.addresses.take(slot, Quota::FollowerStart, instant)
    {
        if let Some(held_back) = FOLLOWER_STARTS_REFUSED.pass(instant) {
            tracing::warn!(
                held_back,
                follower = %peer,
                "initialisation refused: limits.follower_starts_per_address_per_hour reached"
            );
        }
        return Err(Reject::status(Status::ErrorBusy));
    }
    let limits = &ctx.config.limits;
    let outcome = ctx
        .store
        .start_follower(
            peer.0,
            record,
            limits.max_follower_servers,
            limits.neighborhood_init_parallelism,
        )
        .await?;
    let snapshot = match outcome {
        StartOutcome::Started(snapshot) => snapshot,
        StartOutcome::Rejected => return Err(Reject::status(Status::ErrorRejected)),
        StartOutcome::Busy => return Err(Reject::status(Status::ErrorBusy)),
        StartOutcome::AlreadyExists => return Err(Reject::status(Status::ErrorAlreadyExists)),
    };
    let follower = NewFollower {
        id: peer.0,
        outbox: session.link().outbox,
        snapshot,
    };
    if ctx.peers.new_followers.try_send(follower).is_err() {
        // The snapshot task takes each at once: the channel is full only while it stops.
        ctx.store.remove_follower(peer.0).await?;
        return Err(Reject::status(Status::ErrorBusy));
    }
    if let Some(held_back) = FOLLOWERS_STARTED.pass(instant) {
        tracing::info!(follower = %peer, held_back, "follower initialisation started");
    }
    ctx.peers.health.follower_started(Candidate {
        id: peer.0,
        address,
        primary_port,
    });
    Ok(ConversationBody::unsigned(
        ResponseType::StartNeighborhoodInitialization(
            ps::StartNeighborhoodInitializationResponse {},
        ),
    ))
}

/// Where a follower that named `given` in its Start, connecting from `source`, receives its
/// updates. Outside test mode only its own public source address: a follower must not make us
/// connect elsewhere (to a third party, again and again, whenever a profile changes). A
/// follower behind a NAT that gives another address is refused; it names the one we see.
fn follower_address(
    given: &[u8],
    source: Option<std::net::IpAddr>,
    test_mode: bool,
) -> Option<std::net::IpAddr> {
    let ip = ip_address(given)?;
    let own = source.is_none_or(|source| source == ip);
    (test_mode || (is_public(ip) && own)).then_some(ip)
}

/// FinishNeighborhoodInitializationRequest from a client: we never start an initialisation on
/// a connection someone else opened, so there is nothing to finish (spec §4.19, PS08017).
pub(crate) fn finish_neighborhood_initialization() -> Result<ConversationBody, Reject> {
    Err(Reject::status(Status::ErrorRejected))
}

/// StopNeighborhoodUpdatesRequest: the follower and its queued actions go (spec §4.19).
pub(crate) async fn stop_neighborhood_updates(
    ctx: &View,
    peer: &Peer,
) -> Result<ConversationBody, Reject> {
    let peer = peer.id;
    ctx.peers.health.answered(Side::Follower, peer.0);
    if !ctx.store.remove_follower(peer.0).await? {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    tracing::info!(follower = %peer, "follower stopped its updates");
    Ok(ConversationBody::unsigned(
        ResponseType::StopNeighborhoodUpdates(ps::StopNeighborhoodUpdatesResponse {}),
    ))
}

/// NeighborhoodSharedProfileUpdateRequest from an initialised neighbour: every item before the
/// first bad one is applied, that one is answered with its `"$i.$field"` (spec §4.19).
pub(crate) async fn neighborhood_shared_profile_update(
    ctx: &View,
    peer: &Peer,
    request: ps::NeighborhoodSharedProfileUpdateRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let peer = peer.id;
    ctx.peers.health.showed_life(peer.0);
    let neighbor = ctx.store.neighbor(peer.0).await?;
    if !neighbor.is_some_and(|n| n.initialized) {
        return Err(Reject::status(Status::ErrorRejected));
    }
    let received = ctx
        .catalog
        .receive_shared(peer.0, request.items, Phase::Live, now)
        .await?;
    match received {
        Received::Applied => Ok(ConversationBody::unsigned(
            ResponseType::NeighborhoodSharedProfileUpdate(
                ps::NeighborhoodSharedProfileUpdateResponse {},
            ),
        )),
        Received::Failed(details) => Err(Reject::invalid(details)),
        Received::NotNeighbor => Err(Reject::status(Status::ErrorRejected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_get_updates_only_at_their_own_public_address() {
        let own = [93, 184, 216, 34];
        let source = Some(std::net::IpAddr::from(own));
        assert_eq!(follower_address(&own, source, false), source);
        let elsewhere = [151, 101, 1, 69];
        assert_eq!(follower_address(&elsewhere, source, false), None);
        assert_eq!(
            follower_address(&[10, 0, 0, 1], Some([10, 0, 0, 1].into()), false),
            None
        );
        assert_eq!(follower_address(&[1, 2, 3], source, false), None);
        // Labs of several servers on one machine name any address.
        assert_eq!(
            follower_address(&elsewhere, source, true),
            Some(elsewhere.into())
        );
    }
}
