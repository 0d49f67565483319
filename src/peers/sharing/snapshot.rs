//! The snapshot a new follower receives (spec §5.7 A.3–A.5): our hosted profiles as they were
//! when it was recorded, streamed in update requests over the follower's own connection, then
//! Finish.
//!
//! The follower is recorded as initialised only on an OK answer to Finish; any failure, a
//! disconnect or a stall removes it with its queued actions, and it may start again. Each item
//! carries the bytes and signature of the version in the snapshot: the snapshot keeps the image
//! files of that version on disk until it ends (`store::images`).

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::clock;
use crate::context::{Ctx, NewFollower};
use crate::crypto::NetworkId;
use crate::hub::{Command, Outbox, Reply, ServerRequestKind};
use crate::log_gate::LogGate;
use crate::neighborhood::sharing::batches::{Batch, profile_item};
use crate::store::StoreError;
use crate::store::followers::{SharedProfile, Snapshot};
use crate::wire::ps::{self, conversation_request};
use crate::wire::{Status, request};

/// Followers decide how often these happen: their lines are rationed.
static INITIALISED: LogGate = LogGate::new(30);
static FAILED: LogGate = LogGate::new(30);

/// Items in the first update of a snapshot; each answered update doubles the next one's, up to
/// what fits in a frame. A follower that drops out early has cost little.
const FIRST_BATCH_ITEMS: usize = 8;

/// Snapshot profiles read from the database at a time while packing batches.
const SNAPSHOT_PAGE: usize = 256;

/// Streams the snapshot to every follower the handlers accept, until shutdown.
pub(crate) async fn run(ctx: Arc<Ctx>, mut followers: mpsc::Receiver<NewFollower>) {
    loop {
        let follower = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            follower = followers.recv() => follower,
        };
        let Some(follower) = follower else { return };
        ctx.spawn(share(Arc::clone(&ctx), follower));
    }
}

async fn share(ctx: Arc<Ctx>, follower: NewFollower) {
    let NewFollower {
        id,
        outbox,
        snapshot,
    } = follower;
    let deadline = ctx.config.neighborhood.follower_init_timeout;
    let outcome = tokio::select! {
        () = ctx.shutdown.cancelled() => Err("the server is stopping"),
        outcome = tokio::time::timeout(deadline, stream(&ctx, id, &outbox, &snapshot)) => {
            outcome.unwrap_or(Err("it took longer than neighborhood.follower_init_timeout_secs"))
        }
    };
    drop(snapshot);
    let follower = NetworkId(id);
    let stored = match outcome {
        Ok(()) => {
            let now = clock::unix_ms();
            let finished = ctx.store.update_follower(id, move |record| {
                record.initialized = true;
                record.refreshed_at_ms = now;
            });
            finished.await.map(|_| {
                if let Some(held_back) = INITIALISED.pass(tokio::time::Instant::now()) {
                    tracing::info!(%follower, held_back, "follower initialised");
                }
            })
        }
        Err(why) => {
            if let Some(held_back) = FAILED.pass(tokio::time::Instant::now()) {
                tracing::info!(%follower, why, held_back, "follower initialisation failed");
            }
            ctx.store.remove_follower(id).await.map(drop)
        }
    };
    if let Err(error) = stored {
        tracing::warn!(%error, "cannot record the follower initialisation");
    }
    ctx.catalog.wake_delivery();
}

async fn stream(
    ctx: &Ctx,
    follower: [u8; 32],
    outbox: &Outbox,
    snapshot: &Snapshot,
) -> Result<(), &'static str> {
    let mut batch = Batch::at_most(FIRST_BATCH_ITEMS);
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
        for profile in page {
            let Some(item) = item_of(profile) else {
                continue;
            };
            if let Err(item) = batch.push(item) {
                send_update(ctx, outbox, batch.take()).await?;
                batch.allow_twice_as_many();
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

/// The `add` item of a snapshot profile; `None` when its thumbnail file is lost on disk (the
/// follower then never has it; any later action about it is consistent with that).
fn item_of(mut profile: SharedProfile) -> Option<ps::SharedProfileUpdateItem> {
    let Some(thumbnail) = profile.thumbnail.take() else {
        tracing::error!(
            identity = %NetworkId(profile.id),
            "a hosted profile's thumbnail is lost; left out of a follower's snapshot"
        );
        return None;
    };
    Some(profile_item(&profile, thumbnail, false))
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
