//! Neighbourhood requests a server sends us on srNeighbor (spec §4.19): a follower starting its
//! initialisation or stopping, a neighbour sharing profile updates. The snapshot a new follower
//! receives is streamed by [`share_snapshot`] over the follower's own connection.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::oneshot;

use super::reject::Reject;
use super::{ConversationBody, authenticated_or_verified_peer};
use crate::clock::{self, Now};
use crate::config::is_public;
use crate::context::Ctx;
use crate::hub::{Command, Outbox, Reply, ServerRequestKind};
use crate::neighborhood::batches::{Batch, placeholder, profile_item};
use crate::neighborhood::items::{self, Phase, Shared};
use crate::search::decode_profile;
use crate::store::Durability;
use crate::store::StoreError;
use crate::store::followers::{SharedProfile, Snapshot, StartOutcome};
use crate::store::neighbors::SharedChange;
use crate::store::records::PeerServer;
use crate::wire::ps::{self, conversation_request, conversation_response::ResponseType};
use crate::wire::{Status, request};

/// Spec §4.19: live changes are applied in transactions of at most this many items. An
/// initialisation's batch is staged in one transaction: nothing of it counts before Finish.
const APPLY_CHUNK: usize = 100;
/// Snapshot profiles read from the database at a time while packing batches.
const SNAPSHOT_PAGE: usize = 256;

/// StartNeighborhoodInitializationRequest: checks in the order of spec §4.19, records the
/// follower and starts streaming our hosted profiles to it on this connection.
pub async fn start_neighborhood_initialization(
    ctx: &Arc<Ctx>,
    session: &mut crate::session::Session,
    request: &ps::StartNeighborhoodInitializationRequest,
) -> Result<ConversationBody, Reject> {
    let peer = authenticated_or_verified_peer(session)?.id;
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
    tracing::info!(follower = %peer, "follower initialisation started");
    ctx.spawn(share_snapshot(
        Arc::clone(ctx),
        peer.0,
        session.link().outbox,
        snapshot,
    ));
    Ok(ConversationBody::unsigned(
        ResponseType::StartNeighborhoodInitialization(
            ps::StartNeighborhoodInitializationResponse {},
        ),
    ))
}

/// A 4- or 16-byte address.
pub fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// The wire form of an address: 4 bytes for IPv4, 16 for IPv6.
pub fn ip_bytes(address: IpAddr) -> Vec<u8> {
    match address {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
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
    let neighbor = ctx.store.neighbor(peer.0).await?;
    let Some(neighbor) = neighbor.filter(|n| n.initialized) else {
        return Err(Reject::status(Status::ErrorRejected));
    };
    let error = apply_items(
        ctx,
        peer.0,
        neighbor.shared_profiles,
        request.items,
        Phase::Live,
        now,
    )
    .await?;
    match error {
        Some(details) => Err(Reject::invalid(details)),
        None => Ok(ConversationBody::unsigned(
            ResponseType::NeighborhoodSharedProfileUpdate(
                ps::NeighborhoodSharedProfileUpdateResponse {},
            ),
        )),
    }
}

/// Checks `items` from neighbour `server`, stores the good ones in chunks and keeps the search
/// index in step with what is searchable. Returns the first bad item's details.
pub async fn apply_items(
    ctx: &Ctx,
    server: [u8; 32],
    count: u32,
    items: Vec<ps::SharedProfileUpdateItem>,
    phase: Phase,
    now: Now,
) -> Result<Option<String>, StoreError> {
    let types = ctx
        .store
        .shared_types(server, items::named_ids(&items))
        .await?;
    // Signatures are the costly part: checked on every core the blocking pool may use.
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let threads = cores.min(usize::from(ctx.config.runtime.max_blocking_threads));
    let (items, verified) = tokio::task::spawn_blocking(move || {
        let verified = items::signatures(&items, threads);
        (items, verified)
    })
    .await
    .map_err(|e| StoreError::Task(e.to_string()))?;
    let checked = items::check(items, phase, &Shared { types, count }, &verified);
    let mut changes = checked.changes.into_iter().peekable();
    while changes.peek().is_some() {
        let size = match phase {
            Phase::Initialization => usize::MAX,
            Phase::Live => APPLY_CHUNK,
        };
        let chunk: Vec<SharedChange> = changes.by_ref().take(size).collect();
        let index_changes: Vec<IndexChange> = chunk.iter().filter_map(IndexChange::of).collect();
        let durability = match phase {
            Phase::Initialization => Durability::None,
            Phase::Live => Durability::Immediate,
        };
        ctx.store
            .apply_shared(server, chunk, now.unix_ms, durability)
            .await?;
        // Profiles of a neighbour still initialising become searchable only once it finishes.
        if phase == Phase::Live {
            ctx.search.update(|index| {
                for change in index_changes {
                    match change {
                        IndexChange::Upsert(id, profile) => {
                            index.upsert_neighbor(server, id, &profile);
                        }
                        IndexChange::Remove(id) => index.remove_neighbor(&id),
                    }
                }
            });
        }
    }
    Ok(checked.error)
}

/// What a stored change does to the search index.
enum IndexChange {
    Upsert([u8; 32], ps::ProfileInformation),
    Remove([u8; 32]),
}

impl IndexChange {
    fn of(change: &SharedChange) -> Option<IndexChange> {
        match change {
            SharedChange::Upsert { id, record, .. } => {
                decode_profile(&record.profile).map(|p| IndexChange::Upsert(*id, p))
            }
            SharedChange::Delete { id } => Some(IndexChange::Remove(*id)),
            SharedChange::Refresh => None,
        }
    }
}

/// Streams the snapshot to a new follower on its connection, then Finish (spec §5.7 A.3–A.5).
/// The follower is recorded as initialised only on an OK answer to Finish; any failure, a
/// disconnect or a stall removes it with its queued actions, and it may start again.
async fn share_snapshot(ctx: Arc<Ctx>, follower: [u8; 32], outbox: Outbox, snapshot: Snapshot) {
    let outcome = tokio::select! {
        () = ctx.shutdown.cancelled() => Err("the server is stopping"),
        outcome = stream_snapshot(&ctx, follower, &outbox, &snapshot) => outcome,
    };
    drop(snapshot);
    let id = crate::crypto::NetworkId(follower);
    let stored = match outcome {
        Ok(()) => {
            let now = clock::unix_ms();
            let finished = ctx.store.update_follower(follower, move |record| {
                record.initialized = true;
                record.refreshed_at_ms = now;
            });
            finished
                .await
                .map(|_| tracing::info!(follower = %id, "follower initialised"))
        }
        Err(why) => {
            tracing::info!(follower = %id, why, "follower initialisation failed");
            ctx.store.remove_follower(follower).await.map(drop)
        }
    };
    if let Err(error) = stored {
        tracing::warn!(%error, "cannot record the follower initialisation");
    }
    ctx.actions_queued.notify_one();
}

async fn stream_snapshot(
    ctx: &Ctx,
    follower: [u8; 32],
    outbox: &Outbox,
    snapshot: &Snapshot,
) -> Result<(), &'static str> {
    let mut batch = Batch::default();
    let mut next = Some(read_page(ctx, snapshot, None));
    while let Some(reading) = next.take() {
        let page = reading
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or("the snapshot cannot be read")?;
        let Some(last) = page.last() else { break };
        // The next page is read while this one is sent and the follower answers.
        next = Some(read_page(ctx, snapshot, Some(last.id)));
        for mut profile in page {
            let item = match profile.thumbnail.take() {
                Some(thumbnail) => profile_item(&profile, thumbnail, false),
                // Cancelled since the snapshot and its thumbnail deleted (spec §5.8).
                None => placeholder(&public_key_of(&profile.profile)),
            };
            if let Err(item) = batch.push(item) {
                send_update(ctx, outbox, batch.take()).await?;
                batch
                    .push(*item)
                    .map_err(|_| "an item does not fit in a frame")?;
            }
        }
    }
    if !batch.is_empty() {
        send_update(ctx, outbox, batch.take()).await?;
    }
    // Its slot is free before Finish goes out, so a follower that answers Finish and leaves
    // never makes the next one wait (PS08008).
    ctx.store
        .update_follower(follower, |record| record.finishing = true)
        .await
        .map_err(|_| "the follower cannot be recorded")?;
    let finish = conversation_request::RequestType::FinishNeighborhoodInitialization(
        ps::FinishNeighborhoodInitializationRequest {},
    );
    ask(
        ctx,
        outbox,
        ServerRequestKind::FinishNeighborhoodInitialization,
        finish,
    )
    .await
}

/// Reads the snapshot page after `after` in a task of the server's tracker.
fn read_page(
    ctx: &Ctx,
    snapshot: &Snapshot,
    after: Option<[u8; 32]>,
) -> tokio::task::JoinHandle<Result<Vec<SharedProfile>, StoreError>> {
    let (store, snapshot) = (ctx.store.clone(), snapshot.clone());
    ctx.tasks
        .spawn(async move { store.snapshot_page(&snapshot, after, SNAPSHOT_PAGE).await })
}

fn public_key_of(profile: &[u8]) -> Vec<u8> {
    decode_profile(profile)
        .map(|p| p.public_key)
        .unwrap_or_default()
}

async fn send_update(
    ctx: &Ctx,
    outbox: &Outbox,
    items: Vec<ps::SharedProfileUpdateItem>,
) -> Result<(), &'static str> {
    let update = conversation_request::RequestType::NeighborhoodSharedProfileUpdate(
        ps::NeighborhoodSharedProfileUpdateRequest { items },
    );
    ask(
        ctx,
        outbox,
        ServerRequestKind::NeighborhoodSharedProfileUpdate,
        update,
    )
    .await
}

/// Sends a request to the follower over its connection and waits for an OK answer. The wait is
/// bounded by the port's idle timeout: a follower that stalls longer is cut off anyway.
async fn ask(
    ctx: &Ctx,
    outbox: &Outbox,
    kind: ServerRequestKind,
    body: conversation_request::RequestType,
) -> Result<(), &'static str> {
    let (reply, answer) = oneshot::channel();
    let command = Command::request(
        kind,
        request::conversation(0, Vec::new(), body),
        Reply::Channel(reply),
        None,
    );
    let wait = ctx.config.timeouts.server_idle;
    let sent = tokio::time::timeout(wait, outbox.push(command)).await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err("the follower's connection is gone");
    }
    match tokio::time::timeout(wait, answer).await {
        Ok(Ok(response)) if response.status == Status::Ok as i32 => Ok(()),
        Ok(Ok(_)) => Err("the follower refused a request"),
        Ok(Err(_)) => Err("the follower's connection closed"),
        Err(_) => Err("the follower did not answer in time"),
    }
}
