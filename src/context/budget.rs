//! The in-flight byte budget: incoming frame bytes held in memory, over all connections
//! (`limits.max_inflight_bytes`), with each IP address's share of it
//! (`limits.max_inflight_bytes_per_address`, kept by the address's [`AddressSlot`]).
//!
//! One type owns the limit and its semaphore, so the connection task asks it, never the
//! configuration, whether a frame fits.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;

use crate::hub::AddressSlot;

/// Why bytes could not be reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Short {
    /// The server is stopping (the budget was closed).
    Closed,
    /// The bytes did not come free within the wait.
    TimedOut,
}

/// Incoming frame bytes the server may hold at once.
#[derive(Debug)]
pub(crate) struct Budget {
    bytes: Arc<Semaphore>,
    limit: usize,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub(crate) fn new(limit: usize) -> Budget {
        Budget {
            bytes: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// The whole budget.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes nobody holds now.
    pub(crate) fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// A permit for no bytes, the account a frame starts with; none once the budget closed.
    pub(crate) fn nothing(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.bytes).try_acquire_many_owned(0).ok()
    }

    /// Waits up to `wait` for `bytes` (at most the whole budget is ever asked for).
    pub(crate) async fn reserve(
        &self,
        bytes: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Short> {
        acquire(&self.bytes, bytes, wait).await
    }

    /// Reserves `bytes` that arrived for a frame being received: first from the address's
    /// share, added to `share_held` until the frame is whole (so one address cannot hold the
    /// whole budget with frames it never finishes), then from the whole budget.
    pub(crate) async fn reserve_arriving(
        &self,
        slot: Option<&AddressSlot>,
        share_held: &mut Option<OwnedSemaphorePermit>,
        bytes: usize,
        wait: Duration,
    ) -> Result<OwnedSemaphorePermit, Short> {
        if let Some(slot) = slot {
            let held = acquire(slot.inflight_share(), bytes, wait).await?;
            match share_held {
                Some(share) => share.merge(held),
                None => *share_held = Some(held),
            }
        }
        self.reserve(bytes, wait).await
    }

    /// Whether a body of `body_len` bytes whose decoding allocates `extra` more could ever be
    /// held: no honest message comes near the whole budget.
    pub(crate) fn could_hold(&self, body_len: usize, extra: usize) -> bool {
        body_len.saturating_add(extra) <= self.limit
    }
}

async fn acquire(
    from: &Arc<Semaphore>,
    bytes: usize,
    wait: Duration,
) -> Result<OwnedSemaphorePermit, Short> {
    // Callers ask for at most a whole budget, which is a u32 (config bounds).
    let permits = u32::try_from(bytes).unwrap_or(u32::MAX);
    match timeout(wait, Arc::clone(from).acquire_many_owned(permits)).await {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(Short::Closed),
        Err(_) => Err(Short::TimedOut),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn bytes_held_elsewhere_make_a_reservation_wait_then_time_out() {
        let budget = Budget::new(100);
        let held = budget.reserve(80, Duration::from_secs(1)).await;
        assert!(held.is_ok());
        assert_eq!(budget.available(), 20);
        assert_eq!(
            budget.reserve(30, Duration::from_secs(1)).await.err(),
            Some(Short::TimedOut)
        );
        drop(held);
        assert!(budget.reserve(30, Duration::from_secs(1)).await.is_ok());
    }

    #[test]
    fn a_frame_that_could_never_be_held_is_told_apart() {
        let budget = Budget::new(1000);
        assert!(budget.could_hold(600, 400));
        assert!(!budget.could_hold(600, 401));
        assert!(!budget.could_hold(usize::MAX, 1));
    }
}
