//! The server's own contact record in CAN (spec §8, §9): a `CanProfileServerContact` object
//! with the external address and primary port, and an IPNS record under the server's key that
//! points to it, so clients that lost the server's ports can find it again. The same task
//! unpins the objects of clients whose hosting agreement ended, and the contact objects the
//! server no longer uses, and asks the node whether it answers when nothing else did.
//!
//! `keeper` decides (sans-I/O); this task calls CAN and persists. CAN being down never delays
//! start-up or clients: the record is retried every 10 s, unpins back off from 10 s to 10 min
//! on their own schedule (a stuck unpin never holds a publication up), and the log says when
//! CAN fails and when it is back.
//!
//! Publishing takes the first command the node has: the IoP fork's `name/upload` (a V1
//! record), Kubo's `routing/put`, or `dht/put` (go-ipfs before the rename, js-ipfs), both with a
//! V1+V2 record ([`CanApi::publish_v2`]). What worked is remembered for the node and probed
//! afresh after an error. A `routing/put` or `dht/put` counts only once `name/resolve` gives our
//! object back: js-ipfs answers 200 even to a record it will not serve.

mod keeper;

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use self::keeper::{Action, Keeper};
use crate::can::record::{RECORD_TTL_NS, RecordFields, can_id, ipfs_path};
use crate::can::time::{add_months, format_validity};
use crate::can::{CanApi, CanError};
use crate::clock::Now;
use crate::context::Ctx;
use crate::role::Role;
use crate::wire::can::CanProfileServerContact;

/// How often the unpin queue is looked at without being told of new entries, and the longest
/// wait between unpin attempts after failures.
const UNPIN_CHECK: Duration = Duration::from_secs(600);
/// Unpins read from the database at a time.
const UNPIN_BATCH: usize = 16;
/// How the IoP fork refuses a sequence number it has seen (followed by the stored number).
const NEWER_RECORD: &str = "There is already a newer IPNS record with sequence number: ";

/// Keeps the contact record published until shutdown; returns at once without `[can]`.
pub(crate) async fn run(ctx: Arc<Ctx>) {
    let Some(can) = ctx.can.as_ref() else {
        tracing::info!("no [can] configured: clients cannot find this server again through CAN");
        return;
    };
    let stored = match ctx.store.can_contact().await {
        Ok(stored) => stored,
        Err(error) => {
            tracing::error!(%error, "CAN: cannot read the saved contact record; not publishing");
            return;
        }
    };
    let address = match ctx.external_address {
        std::net::IpAddr::V4(v4) => v4.octets().to_vec(),
        std::net::IpAddr::V6(v6) => v6.octets().to_vec(),
    };
    let start = Now::read().instant;
    let mut task = ContactTask {
        keeper: Keeper::new(stored, address, ctx.port_of(Role::Primary), start),
        api: can.api.clone(),
        failing: false,
        unpin_wait: keeper::RETRY,
        unpins_due: start,
        node_down: false,
    };
    let health_check = ctx
        .config
        .can
        .as_ref()
        .map_or(UNPIN_CHECK, crate::config::CanConfig::health_check);
    loop {
        let now = Now::read();
        task.notice_node(now);
        let action = task.keeper.next(now.instant);
        let publishing = matches!(action, Action::Publish(_));
        let outcome = match action {
            Action::Wait(until) => {
                if now.instant >= task.unpins_due {
                    task.drain_unpins(&ctx).await;
                }
                let until = until.min(task.unpins_due).min(now.instant + health_check);
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(until) => {}
                    () = can.unpins_queued.notified() => task.unpins_due = Now::read().instant,
                }
                if Now::read().instant >= now.instant + health_check {
                    // Its outcome lands in the link's health; the node's return is noticed above.
                    let _ = until_shutdown(&ctx, task.api.version()).await;
                }
                continue;
            }
            Action::Add => until_shutdown(&ctx, task.add(&ctx, now)).await,
            Action::Publish(sequence) => {
                until_shutdown(&ctx, task.publish(&ctx, sequence, now)).await
            }
        };
        let Some(outcome) = outcome else {
            return;
        };
        match outcome {
            Ok(()) if publishing => {
                task.recovered();
                ctx.peers.links.can_published(Now::read().unix_ms);
            }
            Ok(()) => task.recovered(),
            Err(failure) => task.failed(&failure, Now::read()),
        }
    }
}

/// The outcome of `step`, or `None` when the server stops first.
async fn until_shutdown<T>(ctx: &Ctx, step: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        () = ctx.shutdown.cancelled() => None,
        outcome = step => Some(outcome),
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Can(#[from] CanError),
    #[error("database: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("CAN's reply does not match the record: {0}")]
    Mismatch(String),
}

struct ContactTask {
    keeper: Keeper,
    api: CanApi,
    /// The last step failed (logged once until a step succeeds).
    failing: bool,
    /// The wait before the next unpin attempt after a failure (doubles up to UNPIN_CHECK).
    unpin_wait: Duration,
    /// When the unpin queue is due next.
    unpins_due: tokio::time::Instant,
    /// The node was unreachable at the last look.
    node_down: bool,
}

impl ContactTask {
    /// When the node answers again after being unreachable, the record is due again: the node
    /// may have lost it (restarted with another repository, or lost its datastore).
    fn notice_node(&mut self, now: Now) {
        match self.api.health().answers() {
            Some(false) => self.node_down = true,
            Some(true) if self.node_down => {
                self.node_down = false;
                self.keeper.node_back(now.instant);
                self.unpins_due = now.instant;
                self.unpin_wait = keeper::RETRY;
            }
            _ => {}
        }
    }

    async fn save(&self, ctx: &Ctx, unpin: Vec<u8>) -> Result<(), Failure> {
        Ok(ctx
            .store
            .save_can_contact(self.keeper.stored().clone(), unpin)
            .await?)
    }

    async fn add(&mut self, ctx: &Ctx, now: Now) -> Result<(), Failure> {
        let contact = CanProfileServerContact {
            public_key: ctx.key.public_key().to_vec(),
            ip_address: self.keeper.address().to_vec(),
            primary_port: u32::from(ctx.port_of(Role::Primary)),
        };
        let hash = self.api.add(&contact.encode_to_vec()).await?;
        let replaced = self.keeper.added(hash, now.instant);
        self.save(ctx, replaced.clone()).await?;
        if !replaced.is_empty() {
            self.unpins_due = now.instant;
        }
        tracing::info!(path = %ipfs_path(&self.keeper.stored().object_hash), "CAN: contact object added");
        Ok(())
    }

    /// Publishes record `sequence` (reserved and saved first) with the first command the node
    /// has (see the module notes).
    async fn publish(&mut self, ctx: &Ctx, sequence: u64, now: Now) -> Result<(), Failure> {
        self.save(ctx, Vec::new()).await?;
        let fields = RecordFields {
            value: ipfs_path(&self.keeper.stored().object_hash).into_bytes(),
            validity: format_validity(add_months(now.unix_ms, 1)).into_bytes(),
            sequence,
            ttl_ns: RECORD_TTL_NS,
        };
        let uploaded = if self.api.lacks_name_upload() {
            false
        } else {
            match self.name_upload(ctx, &fields).await {
                Ok(()) => true,
                Err(Failure::Can(CanError::NoSuchCommand(_))) => {
                    tracing::info!("CAN: the node has no name/upload; publishing V1+V2 records");
                    false
                }
                Err(failure) => return Err(failure),
            }
        };
        if !uploaded {
            let public_key = ctx.key.public_key();
            let record = fields.sign_v1_v2(&ctx.key).encode_to_vec();
            self.api
                .publish_v2(public_key, &record, &fields.value)
                .await?;
        }
        self.keeper.published(now.instant);
        tracing::info!(sequence, "CAN: contact record published");
        Ok(())
    }

    async fn name_upload(&mut self, ctx: &Ctx, fields: &RecordFields) -> Result<(), Failure> {
        let public_key = ctx.key.public_key();
        let record = fields.sign_v1(&ctx.key).encode_to_vec();
        match self.api.name_upload(&record, public_key).await {
            Ok(reply) => {
                let expected = (can_id(public_key), fields.value.as_slice(), fields.sequence);
                let got = (reply.peer.clone(), reply.new_path.as_bytes(), reply.new_seq);
                if got != expected {
                    return Err(Failure::Mismatch(format!("{reply:?}")));
                }
                Ok(())
            }
            Err(CanError::Refused { message, .. }) if message.starts_with(NEWER_RECORD) => {
                if let Ok(taken) = message[NEWER_RECORD.len()..].trim().parse() {
                    self.keeper.sequence_taken(taken);
                }
                Err(CanError::Refused {
                    status: 500,
                    message,
                }
                .into())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Unpins queued objects (clients' and our old contact objects) until the queue is empty
    /// or a call fails; after a failure the next attempt waits twice as long as the last, up to
    /// [`UNPIN_CHECK`].
    async fn drain_unpins(&mut self, ctx: &Ctx) {
        let outcome = self.unpin_all(ctx).await;
        let now = Now::read().instant;
        match outcome {
            Ok(()) => {
                self.unpin_wait = keeper::RETRY;
                self.unpins_due = now + UNPIN_CHECK;
            }
            Err(failure) => {
                if self.unpin_wait == keeper::RETRY {
                    tracing::warn!(error = %failure, "CAN: an unpin failed; retrying with backoff");
                }
                self.unpins_due = now + self.unpin_wait;
                self.unpin_wait = (self.unpin_wait * 2).min(UNPIN_CHECK);
            }
        }
    }

    async fn unpin_all(&mut self, ctx: &Ctx) -> Result<(), Failure> {
        loop {
            let hashes = ctx.store.can_unpins(UNPIN_BATCH).await?;
            if hashes.is_empty() {
                return Ok(());
            }
            for hash in hashes {
                self.api.unpin(&hash).await?;
                ctx.store.can_unpinned(hash).await?;
            }
        }
    }

    fn failed(&mut self, failure: &Failure, now: Now) {
        self.keeper.failed(now.instant);
        if !self.failing {
            tracing::warn!(error = %failure, "CAN: call failed; retrying every 10 s");
            self.failing = true;
        }
    }

    fn recovered(&mut self) {
        if self.failing {
            tracing::info!("CAN: calls succeed again");
            self.failing = false;
        }
    }
}
