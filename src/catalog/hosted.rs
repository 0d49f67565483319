//! Changes of hosted identities (spec §4.5, §4.8, §4.9, §6): registration, profile updates
//! with their images, cancellation, and the purge of expired records.

use super::Catalog;
use crate::crypto::NetworkId;
use crate::store::StoreError;
use crate::store::identities::{ProfileUpdate, RegisterOutcome};
use crate::store::records::HostedIdentity;
use crate::wire::ps;

impl Catalog {
    /// Registers an identity (uninitialised: nothing to index or share yet).
    pub(crate) async fn register_hosting(
        &self,
        id: NetworkId,
        record: HostedIdentity,
        max_hosted: u32,
    ) -> Result<RegisterOutcome, StoreError> {
        let _serial = self.serialise(&id.0).await;
        self.store.register_hosting(id, record, max_hosted).await
    }

    /// Replaces the profile of a hosted identity; `profile` is the decoded form of
    /// `update.profile`, which the index takes. False when the identity is not hosted (any
    /// more).
    pub(crate) async fn update_profile(
        &self,
        id: NetworkId,
        update: ProfileUpdate,
        profile: &ps::ProfileInformation,
    ) -> Result<bool, StoreError> {
        let _serial = self.serialise(&id.0).await;
        let propagated = update.propagate;
        if !self.store.update_profile(id, update).await? {
            return Ok(false);
        }
        self.search
            .update(|index| index.upsert_hosted(id.0, profile));
        if propagated {
            self.wake_delivery();
        }
        Ok(true)
    }

    /// Ends a hosting agreement; false when the identity is not hosted or cancelled already.
    pub(crate) async fn cancel_hosting(
        &self,
        id: NetworkId,
        redirect: Option<[u8; 32]>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let _serial = self.serialise(&id.0).await;
        if !self.store.cancel_hosting(id, redirect, now_ms).await? {
            return Ok(false);
        }
        self.search.update(|index| index.remove_hosted(&id.0));
        self.wake_delivery();
        Ok(true)
    }

    /// Deletes cancelled identities whose redirect period is over (no longer in the index since
    /// their cancellation). Returns how many.
    pub(crate) async fn purge_expired(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.store.purge_expired(now_ms).await
    }
}
