//! Neighbourhood requests a server sends us on srNeighbor (spec §4.19): a follower starting its
//! initialisation or stopping, a neighbour sharing profile updates. The snapshot a new follower
//! receives is streamed by `peers` over the follower's own connection; the updates a neighbour
//! shares are checked and stored by the catalog.

use std::sync::Arc;

use super::reject::Reject;
use super::{ConversationBody, authenticated_or_verified_peer};
use crate::catalog::Received;
use crate::clock::Now;
use crate::config::is_public;
use crate::context::{Ctx, NewFollower};
use crate::hub::{Candidate, Side};
use crate::neighborhood::items::Phase;
use crate::store::followers::StartOutcome;
use crate::store::records::PeerServer;
use crate::wire::Status;
use crate::wire::address::{ip_address, ip_bytes};
use crate::wire::ps::{self, conversation_response::ResponseType};

/// StartNeighborhoodInitializationRequest: checks in the order of spec §4.19, records the
/// follower and starts streaming our hosted profiles to it on this connection.
pub async fn start_neighborhood_initialization(
    ctx: &Arc<Ctx>,
    session: &mut crate::session::Session,
    request: &ps::StartNeighborhoodInitializationRequest,
) -> Result<ConversationBody, Reject> {
    let peer = authenticated_or_verified_peer(session)?.id;
    ctx.peer_health.showed_life(peer.0);
    let port = |value: u32, field: &'static str| {
        u16::try_from(value)
            .ok()
            .filter(|&p| p != 0)
            .ok_or(Reject::invalid(field))
    };
    let primary_port = port(request.primary_port, "primaryPort")?;
    let sr_neighbor_port = port(request.sr_neighbor_port, "srNeighborPort")?;
    let address = ip_address(&request.ip_address)
        .filter(|&ip| ctx.config.test_mode || is_public(ip))
        .ok_or(Reject::invalid("ipAddress"))?;
    let record = PeerServer {
        ip_address: ip_bytes(address),
        primary_port: u32::from(primary_port),
        sr_neighbor_port: u32::from(sr_neighbor_port),
        ..PeerServer::default()
    };
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
    if ctx.new_followers.try_send(follower).is_err() {
        // The snapshot task takes each at once: the channel is full only while it stops.
        ctx.store.remove_follower(peer.0).await?;
        return Err(Reject::status(Status::ErrorBusy));
    }
    tracing::info!(follower = %peer, "follower initialisation started");
    ctx.peer_health.follower_started(Candidate {
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

/// FinishNeighborhoodInitializationRequest from a client: we never start an initialisation on
/// a connection someone else opened, so there is nothing to finish (spec §4.19, PS08017).
pub fn finish_neighborhood_initialization() -> Result<ConversationBody, Reject> {
    Err(Reject::status(Status::ErrorRejected))
}

/// StopNeighborhoodUpdatesRequest: the follower and its queued actions go (spec §4.19).
pub async fn stop_neighborhood_updates(
    ctx: &Ctx,
    session: &crate::session::Session,
) -> Result<ConversationBody, Reject> {
    let peer = authenticated_or_verified_peer(session)?.id;
    ctx.peer_health.answered(Side::Follower, peer.0);
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
pub async fn neighborhood_shared_profile_update(
    ctx: &Ctx,
    session: &crate::session::Session,
    request: ps::NeighborhoodSharedProfileUpdateRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let peer = authenticated_or_verified_peer(session)?.id;
    ctx.peer_health.showed_life(peer.0);
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
