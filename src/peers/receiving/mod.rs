//! The receiving side of the neighbourhood (spec §5.7 B): the neighbour servers LOC reports,
//! the initialisation that pulls each one's profiles, their expiry, and Stop when one goes.
//!
//! One manager task owns the schedule: a new neighbour is initialised after a random delay of
//! up to `init_delay_max_secs`, at most `neighborhood_init_parallelism` at a time; a failed
//! initialisation is tried again after a wait that starts at a few seconds and doubles up to
//! `action_retry_secs`, and at once when the neighbour shows life (LOC announces it again, or it
//! sends us a neighbourhood request). Profiles arrive batch by batch into the store and become
//! searchable only when the neighbour sends Finish.
//!
//! LOC's lists only add: a neighbour goes when LOC removes it or it stops refreshing, never
//! because a list left it out. A server that starts following us becomes a neighbour too: LOC
//! neighbourhoods are mutual, and LOC 2.0 may not have told us of it yet. LOC 2.0 lists a node whose Profile service it has not learnt yet
//! (it accepts and renews peers without their services) and notifies only the first session it
//! ever accepted, so a list that misses a neighbour says nothing about it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::{Instant, sleep_until};

use super::client::{PeerClient, PeerError, sr_neighbor_port};
use super::loc::{LocEvent, NeighborNode};
use super::retry_delay;
use crate::catalog::Received;
use crate::clock::{self, Now};
use crate::config::is_public;
use crate::context::Ctx;
use crate::crypto::{NetworkId, random_bytes};
use crate::hub::{Candidate, Side};
use crate::neighborhood::receiving::Phase;
use crate::role::Role;
use crate::store::StoreError;
use crate::store::records::PeerServer;
use crate::wire::Status;
use crate::wire::address::{ip_address, ip_bytes};
use crate::wire::ps::{self, conversation_request, conversation_response, request};

/// Spec §5.7 B.3: an initialisation that takes longer is abandoned (C#: 10 min less 90 s).
const INIT_DEADLINE: Duration = Duration::from_secs(510);
/// How often neighbours are checked for expiry (C#: 31 min).
const EXPIRY_CHECK: Duration = Duration::from_secs(31 * 60);
/// A neighbour's refresh time is written again only when it is older than this, so a list read
/// every minute does not write to the card every minute (expiry takes a day at the least).
const REFRESH_WRITE: Duration = Duration::from_secs(3600);

/// Why an initialisation did not complete.
#[derive(Debug)]
enum Failure {
    /// Try again after `action_retry_secs`.
    Retry(String),
    /// The server at the address is not the neighbour: forget it.
    Impostor,
}

impl From<PeerError> for Failure {
    fn from(error: PeerError) -> Failure {
        match error {
            PeerError::WrongIdentity => Failure::Impostor,
            other => Failure::Retry(other.to_string()),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(error: StoreError) -> Failure {
        Failure::Retry(error.to_string())
    }
}

/// The manager's state: initialisations waiting for their time, running ones, and the LOC node
/// id of each neighbour (a removal names the node, not the profile server).
struct Schedule {
    due: HashMap<[u8; 32], Instant>,
    /// Failed initialisations in a row, per neighbour (for the backoff).
    failures: HashMap<[u8; 32], u32>,
    nodes: HashMap<Vec<u8>, [u8; 32]>,
    running: JoinSet<([u8; 32], Result<(), Failure>)>,
    handles: HashMap<[u8; 32], AbortHandle>,
}

/// Follows LOC's reports until shutdown; without LOC (`reports` closed) it only expires
/// neighbours.
pub(crate) async fn run(ctx: Arc<Ctx>, mut reports: mpsc::Receiver<LocEvent>) {
    let mut schedule = Schedule {
        due: HashMap::new(),
        failures: HashMap::new(),
        nodes: HashMap::new(),
        running: JoinSet::new(),
        handles: HashMap::new(),
    };
    let mut expiry =
        tokio::time::interval(EXPIRY_CHECK.min(ctx.config.neighborhood.neighbor_expiration));
    let mut reporting = true;
    loop {
        let next = schedule.due.values().min().copied();
        let due = async {
            match next {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            report = reports.recv(), if reporting => match report {
                Some(report) => handle(&ctx, &mut schedule, report).await,
                None => reporting = false,
            },
            () = due => {}
            Some(done) = schedule.running.join_next(), if !schedule.running.is_empty() => {
                if let Ok((id, outcome)) = done {
                    finished(&ctx, &mut schedule, id, outcome).await;
                }
            }
            _ = expiry.tick() => expire(&ctx, &mut schedule).await,
            () = ctx.peers.health.signs_given(Side::Neighbor) => {
                for id in ctx.peers.health.take_signs(Side::Neighbor) {
                    hasten(&mut schedule, id);
                }
                for candidate in ctx.peers.health.take_candidates() {
                    if let Err(error) = follower_as_neighbor(&ctx, &mut schedule, candidate).await {
                        tracing::warn!(%error, "cannot take a follower as neighbour");
                    }
                }
            }
        }
        start_due(&ctx, &mut schedule);
    }
    schedule.running.shutdown().await;
}

async fn handle(ctx: &Arc<Ctx>, schedule: &mut Schedule, report: LocEvent) {
    let result = match report {
        LocEvent::Attached { nodes } => {
            ctx.peers.links.set_loc(true, crate::clock::unix_ms());
            known(ctx, schedule, nodes).await
        }
        LocEvent::Upsert(node) => {
            // LOC announcing a neighbour again is a sign of life.
            let id = node.id;
            let result = upsert(ctx, schedule, node).await;
            hasten(schedule, id);
            result
        }
        LocEvent::Removed(node_id) => {
            // LOC names the node; the spec's harness uses the network id as the node id.
            let id = schedule
                .nodes
                .remove(&node_id)
                .or_else(|| <[u8; 32]>::try_from(node_id.as_slice()).ok());
            match id {
                Some(id) => remove(ctx, schedule, id, "LOC removed it").await,
                None => Ok(()),
            }
        }
        LocEvent::Detached => {
            ctx.peers.links.set_loc(false, crate::clock::unix_ms());
            Ok(())
        }
    };
    if let Err(error) = result {
        tracing::warn!(%error, "cannot follow a neighbourhood change");
    }
}

/// A list from LOC: every node in it is (still) a neighbour; none is dropped for missing from
/// it (see the module notes).
async fn known(
    ctx: &Arc<Ctx>,
    schedule: &mut Schedule,
    nodes: Vec<NeighborNode>,
) -> Result<(), StoreError> {
    for node in nodes {
        upsert(ctx, schedule, node).await?;
    }
    Ok(())
}

/// A server that started following us is a neighbour too (see [`Candidate`]), unless it is one
/// already: then only a retry it waits for is hastened.
async fn follower_as_neighbor(
    ctx: &Ctx,
    schedule: &mut Schedule,
    candidate: Candidate,
) -> Result<(), StoreError> {
    if ctx.store.neighbor(candidate.id).await?.is_some() {
        hasten(schedule, candidate.id);
        return Ok(());
    }
    let node = NeighborNode {
        node_id: Vec::new(),
        id: candidate.id,
        address: candidate.address,
        primary_port: candidate.primary_port,
        latitude: 0,
        longitude: 0,
    };
    upsert(ctx, schedule, node).await
}

/// A neighbour waiting for a retry is tried at once.
fn hasten(schedule: &mut Schedule, id: [u8; 32]) {
    if schedule.failures.contains_key(&id)
        && let Some(due) = schedule.due.get_mut(&id)
    {
        *due = (*due).min(Now::read().instant);
    }
}

async fn upsert(ctx: &Ctx, schedule: &mut Schedule, node: NeighborNode) -> Result<(), StoreError> {
    // Loopback and private addresses only in labs (spec §4.19), and never ourselves.
    let reachable = ctx.config.test_mode || is_public(node.address);
    if node.id == ctx.key.network_id().0 || !reachable {
        return Ok(());
    }
    let record = PeerServer {
        ip_address: ip_bytes(node.address),
        primary_port: u32::from(node.primary_port),
        ..PeerServer::default()
    };
    let max = ctx.config.limits.max_neighbors;
    let mut known = ctx.store.neighbor(node.id).await?;
    let moved = known.as_ref().is_some_and(|k| {
        k.ip_address != record.ip_address || k.primary_port != record.primary_port
    });
    // Writes only for a new neighbour or a new address: lists come every minute.
    if known.is_none() || moved {
        if ctx.store.add_neighbor(node.id, record, max).await? {
            tracing::info!(neighbor = %NetworkId(node.id), "new neighbour");
        }
        known = ctx.store.neighbor(node.id).await?;
    }
    if known.is_some() && !node.node_id.is_empty() {
        schedule.nodes.insert(node.node_id, node.id);
    }
    let now = clock::unix_ms();
    let stale = |at: i64| now - at >= i64::try_from(REFRESH_WRITE.as_millis()).unwrap_or(i64::MAX);
    match known {
        // A fresh report of a neighbour counts as a refresh (spec §5.7 B.5).
        Some(known) if known.initialized && stale(known.refreshed_at_ms) => {
            ctx.store
                .update_neighbor(node.id, move |r| r.refreshed_at_ms = now)
                .await?;
        }
        Some(known) if known.initialized => {}
        Some(_)
            if !schedule.due.contains_key(&node.id) && !schedule.handles.contains_key(&node.id) =>
        {
            schedule
                .due
                .insert(node.id, Now::read().instant + init_delay(ctx));
        }
        _ => {}
    }
    Ok(())
}

/// A random delay up to `init_delay_max_secs`, so a neighbourhood does not initialise at once.
fn init_delay(ctx: &Ctx) -> Duration {
    let max = ctx.config.neighborhood.init_delay_max;
    let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(u64::from_le_bytes(random_bytes()) % max_ms.saturating_add(1))
}

/// Forgets a neighbour: its initialisation, its profiles, and tells it we stop following.
async fn remove(
    ctx: &Arc<Ctx>,
    schedule: &mut Schedule,
    id: [u8; 32],
    why: &'static str,
) -> Result<(), StoreError> {
    schedule.due.remove(&id);
    schedule.failures.remove(&id);
    ctx.peers.health.answered(Side::Neighbor, id);
    schedule.nodes.retain(|_, neighbor| *neighbor != id);
    if let Some(handle) = schedule.handles.remove(&id) {
        handle.abort();
    }
    let Some(record) = ctx.store.neighbor(id).await? else {
        return Ok(());
    };
    ctx.catalog.clear_neighbor(id, true).await?;
    tracing::info!(neighbor = %NetworkId(id), why, "neighbour dropped");
    if record.initialized {
        ctx.spawn(stop_updates(Arc::clone(ctx), id, record));
    }
    Ok(())
}

/// Drops neighbours that have not refreshed for `neighbor_expiration_secs` (spec §5.7 B.5).
async fn expire(ctx: &Arc<Ctx>, schedule: &mut Schedule) {
    let limit = ctx.config.neighborhood.neighbor_expiration;
    let limit_ms = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
    let now = clock::unix_ms();
    let neighbors = match ctx.store.neighbors().await {
        Ok(neighbors) => neighbors,
        Err(error) => return tracing::warn!(%error, "cannot check neighbours for expiry"),
    };
    for (id, record) in neighbors {
        if record.initialized
            && now - record.refreshed_at_ms > limit_ms
            && let Err(error) = remove(ctx, schedule, id, "no refresh in time").await
        {
            tracing::warn!(%error, "cannot drop an expired neighbour");
        }
    }
}

fn start_due(ctx: &Arc<Ctx>, schedule: &mut Schedule) {
    let now = Now::read().instant;
    let parallelism = usize::try_from(ctx.config.limits.neighborhood_init_parallelism).unwrap_or(1);
    while schedule.running.len() < parallelism {
        let Some(id) = schedule
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .next()
        else {
            return;
        };
        schedule.due.remove(&id);
        let ctx = Arc::clone(ctx);
        let handle = schedule.running.spawn(async move {
            let outcome = tokio::time::timeout(INIT_DEADLINE, initialize(&ctx, id)).await;
            (
                id,
                outcome.unwrap_or_else(|_| Err(Failure::Retry("deadline passed".into()))),
            )
        });
        schedule.handles.insert(id, handle);
    }
}

async fn finished(
    ctx: &Arc<Ctx>,
    schedule: &mut Schedule,
    id: [u8; 32],
    outcome: Result<(), Failure>,
) {
    schedule.handles.remove(&id);
    let neighbor = NetworkId(id);
    let failure = match outcome {
        Ok(()) => {
            schedule.failures.remove(&id);
            ctx.peers.health.answered(Side::Neighbor, id);
            return tracing::info!(%neighbor, "neighbour initialised");
        }
        Err(failure) => failure,
    };
    // Nothing of a failed initialisation stays (spec §5.7 B.3).
    if let Err(error) = ctx.catalog.clear_neighbor(id, false).await {
        tracing::warn!(%error, "cannot wipe a failed initialisation");
    }
    match failure {
        Failure::Impostor => {
            if let Err(error) = remove(ctx, schedule, id, "another server answers there").await {
                tracing::warn!(%error, "cannot drop a neighbour");
            }
        }
        Failure::Retry(why) => {
            let failures = schedule.failures.entry(id).or_insert(0);
            let delay = retry_delay(*failures, ctx.config.neighborhood.action_retry);
            *failures = failures.saturating_add(1);
            if *failures == 1 {
                tracing::info!(%neighbor, why, "neighbour initialisation failed; will retry");
            } else {
                tracing::debug!(%neighbor, why, "neighbour initialisation failed again");
            }
            let now = Now::read();
            ctx.peers.health.failed(Side::Neighbor, id, now.unix_ms);
            schedule.due.insert(id, now.instant + delay);
        }
    }
}

/// Pulls a neighbour's profiles (spec §5.7 B.2–B.3) and commits them when it sends Finish.
async fn initialize(ctx: &Ctx, id: [u8; 32]) -> Result<(), Failure> {
    let Some(record) = ctx.store.neighbor(id).await? else {
        return Err(Failure::Retry("no longer a neighbour".into()));
    };
    // Anything an earlier attempt left behind goes first, so every item is new again.
    ctx.catalog.clear_neighbor(id, false).await?;
    let mut client = connect(ctx, id, &record).await?;
    let start = ps::StartNeighborhoodInitializationRequest {
        primary_port: u32::from(ctx.port_of(Role::Primary)),
        sr_neighbor_port: u32::from(ctx.port_of(Role::SrNeighbor)),
        ip_address: ip_bytes(ctx.external_address),
    };
    let body = conversation_request::RequestType::StartNeighborhoodInitialization(start);
    match client.conversation(Vec::new(), body).await {
        Ok(_) => {}
        Err(PeerError::Status(Status::ErrorBadRole)) => {
            ctx.store
                .update_neighbor(id, |r| r.sr_neighbor_port = 0)
                .await?;
            return Err(Failure::Retry("its srNeighbor port moved".into()));
        }
        Err(error) => return Err(error.into()),
    }
    receive(ctx, id, &mut client).await
}

/// Answers the neighbour's update batches and its Finish on our connection.
async fn receive(ctx: &Ctx, id: [u8; 32], client: &mut PeerClient) -> Result<(), Failure> {
    loop {
        let (request_id, incoming) = client.next_request().await?;
        let body = match incoming.conversation_type {
            Some(request::ConversationType::ConversationRequest(c)) => c.request_type,
            _ => None,
        };
        match body {
            Some(conversation_request::RequestType::NeighborhoodSharedProfileUpdate(update)) => {
                let now = Now::read();
                let received = ctx
                    .catalog
                    .receive_shared(id, update.items, Phase::Initialization, now)
                    .await?;
                if received == Received::NotNeighbor {
                    return Err(Failure::Retry("no longer a neighbour".into()));
                }
                if let Received::Failed(details) = received {
                    let refusal = Err((Status::ErrorInvalidValue, details.clone()));
                    client.answer(request_id, refusal).await?;
                    return Err(Failure::Retry(format!(
                        "it sent an invalid item: {details}"
                    )));
                }
                let done = conversation_response::ResponseType::NeighborhoodSharedProfileUpdate(
                    ps::NeighborhoodSharedProfileUpdateResponse {},
                );
                client.answer(request_id, Ok(done)).await?;
            }
            Some(conversation_request::RequestType::FinishNeighborhoodInitialization(_)) => {
                commit(ctx, id).await?;
                let done = conversation_response::ResponseType::FinishNeighborhoodInitialization(
                    ps::FinishNeighborhoodInitializationResponse {},
                );
                // Committed already: a neighbour that does not read the answer changes nothing.
                let _ = client.answer(request_id, Ok(done)).await;
                return Ok(());
            }
            _ => {
                let refusal = Err((Status::ErrorRejected, String::new()));
                client.answer(request_id, refusal).await?;
            }
        }
    }
}

/// Makes the neighbour initialised and its profiles searchable.
async fn commit(ctx: &Ctx, id: [u8; 32]) -> Result<(), Failure> {
    if !ctx.catalog.finish_neighbor(id, clock::unix_ms()).await? {
        return Err(Failure::Retry("no longer a neighbour".into()));
    }
    Ok(())
}

/// A verified connection to the neighbour's srNeighbor port, asking its primary port for it
/// when it is not known or no longer answers.
async fn connect(ctx: &Ctx, id: [u8; 32], record: &PeerServer) -> Result<PeerClient, Failure> {
    let ip = ip_address(&record.ip_address).ok_or(Failure::Impostor)?;
    let known = u16::try_from(record.sr_neighbor_port).unwrap_or(0);
    if known != 0
        && let Ok(mut client) =
            PeerClient::connect(SocketAddr::new(ip, known), Role::SrNeighbor).await
    {
        client.verify(&ctx.key, NetworkId(id)).await?;
        return Ok(client);
    }
    let primary = u16::try_from(record.primary_port).unwrap_or(0);
    let port = sr_neighbor_port(ip, primary).await?;
    let learnt = u32::from(port);
    ctx.store
        .update_neighbor(id, move |r| r.sr_neighbor_port = learnt)
        .await?;
    let mut client = PeerClient::connect(SocketAddr::new(ip, port), Role::SrNeighbor).await?;
    client.verify(&ctx.key, NetworkId(id)).await?;
    Ok(client)
}

/// Tells a dropped neighbour to stop sending us updates (spec §5.7 B.5–B.6); best effort.
async fn stop_updates(ctx: Arc<Ctx>, id: [u8; 32], record: PeerServer) {
    let attempt = async {
        let mut client = connect(&ctx, id, &record).await?;
        let body = conversation_request::RequestType::StopNeighborhoodUpdates(
            ps::StopNeighborhoodUpdatesRequest {},
        );
        client
            .conversation(Vec::new(), body)
            .await
            .map_err(Failure::from)
    };
    let outcome = tokio::select! {
        () = ctx.shutdown.cancelled() => return,
        outcome = attempt => outcome,
    };
    if let Err(failure) = outcome {
        tracing::debug!(neighbor = %NetworkId(id), ?failure, "StopNeighborhoodUpdates not delivered");
    }
}
