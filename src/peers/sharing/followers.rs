//! Live delivery to followers (spec §5.7 A.6–A.10): each initialised follower's queued actions,
//! in order, over our own TLS connection to the srNeighbor port it claimed, after checking that
//! the server there is the follower.
//!
//! Runs when actions are queued and every `action_interval_secs`; a follower that cannot be
//! reached is tried again after [`crate::peers::FIRST_RETRY`], the wait doubling up to `action_retry_secs`,
//! and at once when it shows life (it sends us a neighbourhood request); one that refuses an
//! update or turns out to be someone else is dropped with its queue.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::clock::{self, Now};
use crate::context::Ctx;
use crate::crypto::NetworkId;
use crate::hub::Side;
use crate::neighborhood::sharing::delivery;
use crate::peers::client::{PeerClient, PeerError, sr_neighbor_port};
use crate::peers::retry_delay;
use crate::role::Role;
use crate::store::StoreError;
use crate::store::records::PeerServer;
use crate::wire::Status;
use crate::wire::address::ip_address;
use crate::wire::ps::{self, conversation_request};

/// Spec §5.7 A.8: followers served at once (C#: 5).
const PARALLEL_DELIVERIES: usize = 5;
/// Actions read from the queue per delivery.
const ACTIONS_PER_DELIVERY: usize = 200;
/// How often refreshes are queued for followers that are due one (C#: 11 min).
const REFRESH_CHECK: Duration = Duration::from_secs(11 * 60);

/// What became of one delivery round to a follower.
enum Delivered {
    /// Everything queued went through (or nothing was queued).
    Done,
    /// It could not be reached; try again later.
    Retry,
    /// It refused an update or is someone else: it was dropped.
    Dropped,
}

/// Delivers queued actions to followers until shutdown.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let settings = &ctx.config.neighborhood;
    let mut tick = tokio::time::interval(settings.action_interval);
    let mut refresh = tokio::time::interval(REFRESH_CHECK);
    let mut backoff: HashMap<[u8; 32], (Instant, u32)> = HashMap::new();
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            _ = tick.tick() => {}
            () = ctx.catalog.deliveries_wanted() => {}
            () = ctx.peers.health.signs_given(Side::Follower) => {
                for id in ctx.peers.health.take_signs(Side::Follower) {
                    backoff.remove(&id);
                }
            }
            _ = refresh.tick() => queue_refreshes(&ctx).await,
        }
        if let Err(error) = deliver_round(&ctx, &mut backoff).await {
            tracing::warn!(%error, "follower delivery failed");
        }
    }
}

async fn queue_refreshes(ctx: &Ctx) {
    let interval = ctx.config.neighborhood.follower_refresh;
    let interval_ms = i64::try_from(interval.as_millis()).unwrap_or(i64::MAX);
    match ctx
        .store
        .queue_refreshes(clock::unix_ms(), interval_ms)
        .await
    {
        Ok(dropped) => {
            for id in dropped {
                tracing::info!(follower = %NetworkId(id), "follower dropped: refreshes unanswered");
            }
        }
        Err(error) => tracing::warn!(%error, "cannot queue follower refreshes"),
    }
}

/// One pass over every initialised follower not waiting out a failure.
async fn deliver_round(
    ctx: &Arc<Ctx>,
    backoff: &mut HashMap<[u8; 32], (Instant, u32)>,
) -> Result<(), StoreError> {
    let now = Now::read().instant;
    let followers = ctx.store.followers().await?;
    backoff.retain(|id, _| followers.iter().any(|(f, _)| f == id));
    let ids: Vec<[u8; 32]> = followers.iter().map(|(id, _)| *id).collect();
    ctx.peers.health.keep_only(Side::Follower, &ids);
    let due: Vec<([u8; 32], PeerServer)> = followers
        .into_iter()
        .filter(|(id, record)| record.initialized && backoff.get(id).is_none_or(|b| b.0 <= now))
        .collect();
    let mut due = due.into_iter();
    let mut running = JoinSet::new();
    loop {
        while running.len() < PARALLEL_DELIVERIES {
            let Some((id, record)) = due.next() else {
                break;
            };
            let ctx = Arc::clone(ctx);
            running.spawn(async move { (id, deliver(&ctx, id, record).await) });
        }
        let Some(finished) = running.join_next().await else {
            return Ok(());
        };
        let Ok((id, outcome)) = finished else {
            continue;
        };
        match outcome {
            Delivered::Done | Delivered::Dropped => {
                backoff.remove(&id);
                ctx.peers.health.answered(Side::Follower, id);
            }
            Delivered::Retry => {
                let now = Now::read();
                let steps = backoff.get(&id).map_or(0, |b| b.1);
                let delay = retry_delay(steps, ctx.config.neighborhood.action_retry);
                backoff.insert(id, (now.instant + delay, steps.saturating_add(1)));
                ctx.peers.health.failed(Side::Follower, id, now.unix_ms);
            }
        }
    }
}

/// Delivers follower `id`'s queue, batch by batch on one connection.
async fn deliver(ctx: &Ctx, id: [u8; 32], record: PeerServer) -> Delivered {
    let window = match ctx.store.delivery_window(id, ACTIONS_PER_DELIVERY).await {
        Ok(window) if window.actions.is_empty() => return Delivered::Done,
        Ok(window) => window,
        Err(error) => {
            tracing::warn!(%error, "cannot read a follower's queue");
            return Delivered::Retry;
        }
    };
    let plan = delivery::plan(&window);
    let follower = NetworkId(id);
    let mut client = match connect(ctx, id, &record).await {
        Ok(client) => client,
        Err(PeerError::WrongIdentity) => {
            return drop_follower(ctx, id, "another server answered").await;
        }
        Err(error) => {
            tracing::debug!(%follower, %error, "follower unreachable");
            return Delivered::Retry;
        }
    };
    let last = plan.requests.len().saturating_sub(1);
    for (at, (items, last_seq)) in plan.requests.into_iter().enumerate() {
        let update = conversation_request::RequestType::NeighborhoodSharedProfileUpdate(
            ps::NeighborhoodSharedProfileUpdateRequest { items },
        );
        // The removals of unsent adds leave the queue with the window's last request.
        let unsent = if at == last {
            plan.unsent.clone()
        } else {
            Vec::new()
        };
        match client.conversation(Vec::new(), update).await {
            Ok(_) => {
                if let Err(error) = ctx.store.complete_actions(id, last_seq, unsent).await {
                    tracing::warn!(%error, "cannot record a delivery");
                    return Delivered::Retry;
                }
            }
            Err(PeerError::Status(Status::ErrorBadRole)) => {
                forget_port(ctx, id).await;
                return Delivered::Retry;
            }
            Err(PeerError::Status(_)) => {
                return drop_follower(ctx, id, "it refused an update").await;
            }
            Err(error) => {
                tracing::debug!(%follower, %error, "delivery to a follower broke off");
                return Delivered::Retry;
            }
        }
    }
    Delivered::Done
}

/// Opens a verified connection to the follower: the claimed srNeighbor port first, and when
/// that fails the one its primary port reports (spec §5.7 A.7, PS08012).
async fn connect(ctx: &Ctx, id: [u8; 32], record: &PeerServer) -> Result<PeerClient, PeerError> {
    let ip = ip_address(&record.ip_address).ok_or(PeerError::Protocol("bad stored address"))?;
    let claimed = u16::try_from(record.sr_neighbor_port).unwrap_or(0);
    if claimed != 0 {
        let attempt = PeerClient::connect(SocketAddr::new(ip, claimed), Role::SrNeighbor).await;
        if let Ok(mut client) = attempt {
            client.verify(&ctx.key, NetworkId(id)).await?;
            return Ok(client);
        }
    }
    let primary = u16::try_from(record.primary_port).unwrap_or(0);
    let port = sr_neighbor_port(ip, primary).await?;
    if port != claimed {
        let learnt = u32::from(port);
        let stored = ctx
            .store
            .update_follower(id, move |r| r.sr_neighbor_port = learnt);
        if let Err(error) = stored.await {
            tracing::warn!(%error, "cannot store a follower's port");
        }
    }
    let mut client = PeerClient::connect(SocketAddr::new(ip, port), Role::SrNeighbor).await?;
    client.verify(&ctx.key, NetworkId(id)).await?;
    Ok(client)
}

async fn forget_port(ctx: &Ctx, id: [u8; 32]) {
    if let Err(error) = ctx
        .store
        .update_follower(id, |r| r.sr_neighbor_port = 0)
        .await
    {
        tracing::warn!(%error, "cannot forget a follower's port");
    }
}

async fn drop_follower(ctx: &Ctx, id: [u8; 32], why: &'static str) -> Delivered {
    tracing::info!(follower = %NetworkId(id), why, "follower dropped");
    if let Err(error) = ctx.store.remove_follower(id).await {
        tracing::warn!(%error, "cannot drop a follower");
    }
    Delivered::Dropped
}
