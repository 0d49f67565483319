//! Periodic maintenance (spec §6): purge expired cancelled identities, delete unused images.
//! One task, one ticker; every job logs its failures and tries again next time.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::context::Ctx;
use crate::handlers::basic::now_ms;

/// How often cancelled identities past their redirect period are deleted (C#: 119 min).
const PURGE_INTERVAL: Duration = Duration::from_secs(119 * 60);
/// How often image files nobody references are deleted (C#: 37 min).
const IMAGE_CLEANUP_INTERVAL: Duration = Duration::from_secs(37 * 60);

/// Runs the jobs until `shutdown`: each once at start, then on its interval.
pub async fn run(ctx: Arc<Ctx>, shutdown: CancellationToken) {
    let mut purge = tokio::time::interval(PURGE_INTERVAL);
    let mut images = tokio::time::interval(IMAGE_CLEANUP_INTERVAL);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = purge.tick() => match ctx.store.purge_expired(now_ms()).await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "purged expired hosted identities"),
                Err(error) => tracing::warn!(%error, "purging expired identities failed"),
            },
            _ = images.tick() => match ctx.store.remove_unused_images().await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "deleted unused image files"),
                Err(error) => tracing::warn!(%error, "image cleanup failed"),
            },
        }
    }
}
