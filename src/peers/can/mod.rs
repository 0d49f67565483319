//! The server's own contact record in CAN (spec §8, §9): a `CanProfileServerContact` object
//! with the external address and primary port, and an IPNS record under the server's key that
//! points to it, so clients that lost the server's ports can find it again. The same task
//! unpins the objects of clients whose hosting agreement ended.
//!
//! `keeper` decides (sans-I/O); this task calls CAN and persists. CAN being down never delays
//! start-up or clients: calls are retried every 10 s, and the log says when CAN fails and when
//! it is back.

mod keeper;

use std::sync::Arc;
use std::time::Duration;

use prost::Message as _;

use self::keeper::{Action, Keeper};
use crate::can::record::{RECORD_TTL_NS, RecordFields, can_id, ipfs_path, ipns_name};
use crate::can::time::{add_months, format_validity};
use crate::can::{CanApi, CanError};
use crate::clock::Now;
use crate::context::Ctx;
use crate::role::Role;
use crate::wire::can::CanProfileServerContact;

/// How often the unpin queue is looked at without being told of new entries.
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
    let mut task = ContactTask {
        keeper: Keeper::new(
            stored,
            address,
            ctx.port_of(Role::Primary),
            Now::read().instant,
        ),
        api: can.api.clone(),
        stock_ipfs: false,
        failing: false,
    };
    loop {
        let now = Now::read();
        let action = task.keeper.next(now.instant);
        let publishing = matches!(action, Action::Publish(_));
        let outcome = match action {
            Action::Wait(until) => {
                let until = if task.drain_unpins(&ctx).await {
                    until.min(now.instant + UNPIN_CHECK)
                } else {
                    until.min(now.instant + keeper::RETRY)
                };
                tokio::select! {
                    () = ctx.shutdown.cancelled() => return,
                    () = tokio::time::sleep_until(until) => {}
                    () = can.unpins_queued.notified() => {}
                }
                continue;
            }
            Action::Unpin(hash) => until_shutdown(&ctx, task.unpin_old(&ctx, &hash)).await,
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
                ctx.links.can_published(Now::read().unix_ms);
            }
            Ok(()) => task.recovered(),
            Err(failure) => task.failed(&failure, Now::read()),
        }
        ctx.links.set_can(!task.failing, Now::read().unix_ms);
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
    /// The node answered `name/upload` with 404: publish V2 records with `routing/put`.
    stock_ipfs: bool,
    /// The last step failed (logged once until a step succeeds).
    failing: bool,
}

impl ContactTask {
    async fn save(&self, ctx: &Ctx) -> Result<(), Failure> {
        Ok(ctx
            .store
            .save_can_contact(self.keeper.stored().clone())
            .await?)
    }

    async fn unpin_old(&mut self, ctx: &Ctx, hash: &[u8]) -> Result<(), Failure> {
        self.api.unpin(hash).await?;
        self.keeper.unpinned();
        self.save(ctx).await
    }

    async fn add(&mut self, ctx: &Ctx, now: Now) -> Result<(), Failure> {
        let contact = CanProfileServerContact {
            public_key: ctx.key.public_key().to_vec(),
            ip_address: self.keeper_address(),
            primary_port: u32::from(ctx.port_of(Role::Primary)),
        };
        let hash = self.api.add(&contact.encode_to_vec()).await?;
        self.keeper.added(hash, now.instant);
        self.save(ctx).await?;
        tracing::info!(path = %ipfs_path(&self.keeper.stored().object_hash), "CAN: contact object added");
        Ok(())
    }

    fn keeper_address(&self) -> Vec<u8> {
        self.keeper.address().to_vec()
    }

    /// Publishes record `sequence` (reserved and saved first) through the fork's `name/upload`,
    /// or as a V1+V2 record through `routing/put` on a stock IPFS node.
    async fn publish(&mut self, ctx: &Ctx, sequence: u64, now: Now) -> Result<(), Failure> {
        self.save(ctx).await?;
        let fields = RecordFields {
            value: ipfs_path(&self.keeper.stored().object_hash).into_bytes(),
            validity: format_validity(add_months(now.unix_ms, 1)).into_bytes(),
            sequence,
            ttl_ns: RECORD_TTL_NS,
        };
        let public_key = ctx.key.public_key();
        if !self.stock_ipfs {
            let record = fields.sign_v1(&ctx.key).encode_to_vec();
            match self.api.name_upload(&record, public_key).await {
                Ok(reply) => {
                    let expected = (can_id(public_key), fields.value.as_slice(), sequence);
                    let got = (reply.peer.clone(), reply.new_path.as_bytes(), reply.new_seq);
                    if got != expected {
                        return Err(Failure::Mismatch(format!("{reply:?}")));
                    }
                    self.keeper.published(now.instant);
                    tracing::info!(sequence, "CAN: contact record published (name/upload)");
                    return Ok(());
                }
                Err(CanError::NoSuchCommand(_)) => {
                    tracing::info!(
                        "CAN: the node has no name/upload; publishing V2 records with routing/put"
                    );
                    self.stock_ipfs = true;
                }
                Err(CanError::Refused { message, .. }) if message.starts_with(NEWER_RECORD) => {
                    if let Ok(taken) = message[NEWER_RECORD.len()..].trim().parse() {
                        self.keeper.sequence_taken(taken);
                    }
                    return Err(CanError::Refused {
                        status: 500,
                        message,
                    }
                    .into());
                }
                Err(error) => return Err(error.into()),
            }
        }
        let record = fields.sign_v1_v2(&ctx.key).encode_to_vec();
        self.api
            .routing_put(&ipns_name(public_key), &record)
            .await?;
        self.keeper.published(now.instant);
        tracing::info!(sequence, "CAN: contact record published (routing/put)");
        Ok(())
    }

    /// Unpins queued client objects; false when CAN failed and some remain.
    async fn drain_unpins(&mut self, ctx: &Ctx) -> bool {
        loop {
            let hashes = match ctx.store.can_unpins(UNPIN_BATCH).await {
                Ok(hashes) if hashes.is_empty() => return true,
                Ok(hashes) => hashes,
                Err(error) => {
                    self.failed(&Failure::Store(error), Now::read());
                    return false;
                }
            };
            for hash in hashes {
                let done = match self.api.unpin(&hash).await {
                    Ok(()) => ctx.store.can_unpinned(hash).await.map_err(Failure::from),
                    Err(error) => Err(error.into()),
                };
                if let Err(failure) = done {
                    self.failed(&failure, Now::read());
                    return false;
                }
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
