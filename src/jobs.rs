//! What runs on a timer: periodic maintenance (spec §6: purge expired cancelled identities,
//! delete unused images) and the call relays' deadlines (§4.13, §5.5). Each loop ends on
//! shutdown; every job logs its failures and tries again next time.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::sleep_until;
use tokio_util::sync::CancellationToken;

use crate::clock::{self, Now};
use crate::context::Ctx;
use crate::hub::carry_out;
use crate::store::images::Sweep;

/// How often cancelled identities past their redirect period are deleted (C#: 119 min).
const PURGE_INTERVAL: Duration = Duration::from_secs(119 * 60);
/// How often image files nobody references are deleted (C#: 37 min).
const IMAGE_CLEANUP_INTERVAL: Duration = Duration::from_secs(37 * 60);

/// Runs the maintenance jobs until `shutdown`: each once at start, then on its interval.
pub(crate) async fn maintenance(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut purge = tokio::time::interval(PURGE_INTERVAL);
    let mut images = tokio::time::interval(IMAGE_CLEANUP_INTERVAL);
    // Orphaned image files are reported when their number changes, not on every sweep.
    let mut orphans_reported = 0;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = purge.tick() => match ctx.catalog.purge_expired(clock::unix_ms()).await {
                Ok(0) => {}
                Ok(count) => {
                    tracing::info!(count, "purged expired hosted identities");
                    ctx.unpins_queued();
                }
                Err(error) => tracing::warn!(%error, "purging expired identities failed"),
            },
            _ = images.tick() => match ctx.store.sweep_images().await {
                Ok(Sweep { deleted, orphans }) => {
                    if deleted > 0 {
                        tracing::info!(deleted, "deleted released image files");
                    }
                    if orphans != orphans_reported && orphans > 0 {
                        tracing::warn!(orphans, "image files that no record names; left in place");
                    }
                    orphans_reported = orphans;
                }
                Err(error) => tracing::warn!(%error, "image cleanup failed"),
            },
        }
    }
}

/// Fires the relays' deadlines as they fall due, until `shutdown`: one task for every call.
pub(crate) async fn relay_deadlines(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    loop {
        let next = ctx.hub.relays.next_deadline();
        let due = async {
            match next {
                Some(at) => sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            // An earlier deadline may have been set: look again.
            () = ctx.hub.relays.deadline_set() => continue,
            () = due => {}
        }
        carry_out(&ctx.hub.relays, ctx.hub.relays.expire(Now::read().instant));
    }
}
