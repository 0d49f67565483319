//! Hosted identities: registration, profile updates, cancellation, statistics, purging.
//!
//! Each operation is one redb transaction. Profile changes queue their neighbourhood actions in
//! the same transaction (see [`super::actions`]), so an acknowledged change is never lost to
//! followers either.

use std::collections::BTreeMap;

use prost::Message as _;
use redb::{ReadableTable, ReadableTableMetadata};

use super::actions::queue_for_followers;
use super::can::queue_unpin;
use super::images::{release, retain, write_image};
use super::records::{ActionKind, HostedIdentity};
use super::tables::HOSTED_IDENTITIES;
use super::{Store, StoreError};
use crate::crypto::NetworkId;

/// How long a cancelled identity's redirect is kept (spec §4.9: 14 days).
pub(crate) const REDIRECT_KEEP_MS: i64 = 14 * 24 * 3600 * 1000;

/// Result of [`Store::register_hosting`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RegisterOutcome {
    /// Stored (new, or replacing a cancelled record).
    Registered,
    /// No free hosting slot.
    QuotaExceeded,
    /// Hosted already and not cancelled.
    AlreadyExists,
}

/// A new image to reference: its SHA-256 and bytes.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// SHA-256 of `data`.
    pub hash: [u8; 32],
    /// The image file content.
    pub data: Vec<u8>,
}

/// A validated profile replacement.
#[derive(Debug, Clone)]
pub(crate) struct ProfileUpdate {
    /// Canonical encoding of the signed `ProfileInformation`.
    pub profile: Vec<u8>,
    /// The owner's signature over `profile`.
    pub signature: Vec<u8>,
    /// The profile image, when the profile names one.
    pub profile_image: Option<NewImage>,
    /// The thumbnail, when the profile names one.
    pub thumbnail_image: Option<NewImage>,
    /// False when the client set `no_propagation`.
    pub propagate: bool,
    /// The server clock in ms.
    pub now_ms: i64,
}

fn decode(bytes: &[u8]) -> Result<HostedIdentity, StoreError> {
    HostedIdentity::decode(bytes).map_err(|_| StoreError::Record("hosted identity"))
}

impl Store {
    /// Registers an identity: quota first (counting every row, as the reference server does),
    /// then the "already hosted" check (spec §4.5 steps 6 and 7).
    pub(crate) async fn register_hosting(
        &self,
        id: NetworkId,
        record: HostedIdentity,
        max_hosted: u32,
    ) -> Result<RegisterOutcome, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(HOSTED_IDENTITIES)?;
            if table.len()? >= u64::from(max_hosted) {
                return Ok(RegisterOutcome::QuotaExceeded);
            }
            if let Some(existing) = table.get(id.0)?
                && !decode(existing.value())?.cancelled
            {
                return Ok(RegisterOutcome::AlreadyExists);
            }
            table.insert(id.0, record.encode_to_vec().as_slice())?;
            Ok(RegisterOutcome::Registered)
        })
        .await
    }

    /// The hosted identity record, cancelled or not.
    pub(crate) async fn hosted_identity(
        &self,
        id: NetworkId,
    ) -> Result<Option<HostedIdentity>, StoreError> {
        self.read(move |txn| {
            let table = txn.open_table(HOSTED_IDENTITIES)?;
            table.get(id.0)?.map(|v| decode(v.value())).transpose()
        })
        .await
    }

    /// Number of hosted-identity rows, cancelled ones included.
    pub(crate) async fn hosted_count(&self) -> Result<u64, StoreError> {
        self.read(|txn| Ok(txn.open_table(HOSTED_IDENTITIES)?.len()?))
            .await
    }

    /// Hosted-identity rows, and how many of them are cancelled (awaiting purge).
    pub(crate) async fn hosted_counts(&self) -> Result<(u64, u64), StoreError> {
        self.read(|txn| {
            let table = txn.open_table(HOSTED_IDENTITIES)?;
            let mut cancelled = 0;
            for entry in table.iter()? {
                if decode(entry?.1.value())?.cancelled {
                    cancelled += 1;
                }
            }
            Ok((table.len()?, cancelled))
        })
        .await
    }

    /// Replaces the profile of a hosted, non-cancelled identity, swapping image references and
    /// queueing Add (first update) or Change actions for followers. Returns false when the
    /// identity is not hosted (any more).
    pub(crate) async fn update_profile(
        &self,
        id: NetworkId,
        update: ProfileUpdate,
    ) -> Result<bool, StoreError> {
        let dir = self.dir().to_path_buf();
        self.write_grouped(move |txn, freed| {
            let mut table = txn.open_table(HOSTED_IDENTITIES)?;
            let Some(mut record) = table.get(id.0)?.map(|v| decode(v.value())).transpose()? else {
                return Ok(false);
            };
            if record.cancelled {
                return Ok(false);
            }
            // Files before the transaction that references them (see `super::images`).
            for image in [&update.profile_image, &update.thumbnail_image]
                .into_iter()
                .flatten()
            {
                write_image(&dir, &image.hash, &image.data)?;
            }
            let old = [
                record.profile_image_hash.clone(),
                record.thumbnail_image_hash.clone(),
            ];
            let new = [
                image_hash(update.profile_image.as_ref()),
                image_hash(update.thumbnail_image.as_ref()),
            ];
            for (old, new) in old.iter().zip(&new) {
                if old == new {
                    continue;
                }
                if let Ok(hash) = <[u8; 32]>::try_from(new.as_slice()) {
                    retain(txn, &hash)?;
                }
                if let Ok(hash) = <[u8; 32]>::try_from(old.as_slice())
                    && release(txn, &hash)?
                {
                    freed.push(hash);
                }
            }
            let kind = if record.initialized {
                ActionKind::ChangeProfile
            } else {
                ActionKind::AddProfile
            };
            record.initialized = true;
            record.profile = update.profile;
            record.signature = update.signature;
            [record.profile_image_hash, record.thumbnail_image_hash] = new;
            table.insert(id.0, record.encode_to_vec().as_slice())?;
            drop(table);
            if update.propagate {
                queue_for_followers(txn, kind, id, update.now_ms)?;
            }
            Ok(true)
        })
        .await
    }

    /// Cancels hosting: drops the images, queues the CAN object for unpinning, keeps the record (with the redirect) until it expires,
    /// queues Remove actions. Returns false when the identity is not hosted or already cancelled.
    pub(crate) async fn cancel_hosting(
        &self,
        id: NetworkId,
        redirect: Option<[u8; 32]>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write_grouped(move |txn, freed| {
            let mut table = txn.open_table(HOSTED_IDENTITIES)?;
            let Some(mut record) = table.get(id.0)?.map(|v| decode(v.value())).transpose()? else {
                return Ok(false);
            };
            if record.cancelled {
                return Ok(false);
            }
            for hash in [&record.profile_image_hash, &record.thumbnail_image_hash] {
                if let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice())
                    && release(txn, &hash)?
                {
                    freed.push(hash);
                }
            }
            let was_initialized = record.initialized;
            record.cancelled = true;
            record.redirect_server_id = redirect.map(|r| r.to_vec()).unwrap_or_default();
            record.expires_at_ms = if redirect.is_some() {
                now_ms.saturating_add(REDIRECT_KEEP_MS)
            } else {
                now_ms
            };
            record.profile_image_hash.clear();
            record.thumbnail_image_hash.clear();
            queue_unpin(txn, &std::mem::take(&mut record.can_object_hash))?;
            table.insert(id.0, record.encode_to_vec().as_slice())?;
            drop(table);
            if was_initialized {
                queue_for_followers(txn, ActionKind::RemoveProfile, id, now_ms)?;
            }
            Ok(true)
        })
        .await
    }

    /// Initialised, non-cancelled hosted profiles counted by exact type (spec §4.17).
    pub(crate) async fn profile_stats(&self) -> Result<BTreeMap<String, u32>, StoreError> {
        self.read(|txn| {
            let table = txn.open_table(HOSTED_IDENTITIES)?;
            let mut counts = BTreeMap::new();
            for entry in table.iter()? {
                let (_, value) = entry?;
                let record = decode(value.value())?;
                if record.initialized && !record.cancelled {
                    *counts.entry(record.identity_type).or_insert(0u32) += 1;
                }
            }
            Ok(counts)
        })
        .await
    }

    /// Deletes cancelled identities whose redirect period is over, queueing any CAN object they
    /// still name for unpinning. Returns how many.
    pub(crate) async fn purge_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.write(move |txn| {
            let mut table = txn.open_table(HOSTED_IDENTITIES)?;
            let mut expired = Vec::new();
            for entry in table.iter()? {
                let (key, value) = entry?;
                let record = decode(value.value())?;
                if record.cancelled && record.expires_at_ms <= now_ms {
                    expired.push(key.value());
                    queue_unpin(txn, &record.can_object_hash)?;
                }
            }
            for key in &expired {
                table.remove(key)?;
            }
            Ok(expired.len())
        })
        .await
    }
}

fn image_hash(image: Option<&NewImage>) -> Vec<u8> {
    image.map(|i| i.hash.to_vec()).unwrap_or_default()
}
