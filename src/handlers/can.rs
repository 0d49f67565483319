//! The client's side of CAN: CanStoreData and CanPublishIpnsRecord (spec §4.21, §5.9).
//!
//! The server is the client's authorisation layer: it stores one object per hosted identity,
//! checks that the object links back to this server, and forwards the client's own signed IPNS
//! record to the CAN node.

use prost::Message as _;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::ConversationBody;
use super::reject::Reject;
use crate::can::record::{ipfs_path, ipns_name};
use crate::can::time::parse_rfc3339;
use crate::can::verify::verify;
use crate::can::{CanApi, CanError};
use crate::clock::Now;
use crate::context::View;
use crate::log_gate::LogGate;
use crate::session::Peer;
use crate::store::records::HostedIdentity;
use crate::wire::Status;
use crate::wire::ps::{self, conversation_response::ResponseType};

/// CAN failures while serving clients that are logged, per minute.
static CAN_FAILURES: LogGate = LogGate::new(6);

/// CanStoreDataRequest: replaces the client's object, or deletes it when `data` is absent.
pub(crate) async fn can_store_data(
    ctx: &View,
    peer: Peer,
    request: ps::CanStoreDataRequest,
    now: Instant,
) -> Result<ConversationBody, Reject> {
    if let Some(data) = &request.data
        && data.hosting_server_id != ctx.key.network_id().0
    {
        return Err(Reject::invalid("data.hostingServerId"));
    }
    let (api, _slot) = can_slot(ctx)?;
    let identity = hosted(ctx, &peer).await?;
    if !identity.can_object_hash.is_empty() {
        api.unpin(&identity.can_object_hash)
            .await
            .map_err(|e| rejected(&e, now))?;
        ctx.store.set_can_object(peer.id, Vec::new()).await?;
    }
    let Some(data) = request.data else {
        return Ok(store_answer(Vec::new()));
    };
    let hash = api
        .add(&data.encode_to_vec())
        .await
        .map_err(|e| rejected(&e, now))?;
    match ctx.store.set_can_object(peer.id, hash.clone()).await {
        Ok(true) => Ok(store_answer(hash)),
        // Cancelled meanwhile, or the write failed: the object must not stay pinned unnamed.
        outcome => {
            if let Err(error) = api.unpin(&hash).await {
                tracing::warn!(%error, "CAN: an object no identity names stays pinned");
            }
            outcome?;
            Err(Reject::status(Status::ErrorNotFound))
        }
    }
}

/// CanPublishIpnsRecordRequest: checks the client's record against its object and contract,
/// then publishes it through the fork's `name/upload`, or on a stock node (no `name/upload`) a
/// V1+V2 record through `routing/put` or `dht/put`, checked against today's IPNS rules first.
pub(crate) async fn can_publish_ipns_record(
    ctx: &View,
    peer: Peer,
    request: ps::CanPublishIpnsRecordRequest,
    now: Now,
) -> Result<ConversationBody, Reject> {
    let record = request.record.ok_or(Reject::invalid("record"))?;
    let identity = hosted(ctx, &peer).await?;
    if identity.can_object_hash.is_empty() {
        return Err(Reject::status(Status::ErrorNotFound));
    }
    if record.value != ipfs_path(&identity.can_object_hash).as_bytes() {
        return Err(Reject::invalid("record.value"));
    }
    let validity = std::str::from_utf8(&record.validity)
        .ok()
        .and_then(parse_rfc3339);
    if validity.is_none_or(|until| until > identity.expires_at_ms) {
        return Err(Reject::invalid("record.validity"));
    }
    let (api, _slot) = can_slot(ctx)?;
    let bytes = record.encode_to_vec();
    if !api.lacks_name_upload() {
        match api.name_upload(&bytes, &peer.public_key).await {
            Ok(_) => return Ok(published()),
            Err(CanError::NoSuchCommand(_)) => {}
            Err(error) => return Err(rejected(&error, now.instant)),
        }
    }
    // A stock node: only a record with a V2 signature is of use to it (loc-can.md appendix C).
    let name = ipns_name(&peer.public_key);
    if let Err(invalid) = verify(&name, &bytes, now.unix_ms) {
        return Err(Reject::with_details(
            Status::ErrorRejected,
            format!(
                "the CAN node is a stock IPFS node, which takes only records with a valid V2 \
                 signature: {invalid}"
            ),
        ));
    }
    match api
        .publish_v2(&peer.public_key, &bytes, &record.value)
        .await
    {
        Ok(()) => Ok(published()),
        Err(error) => Err(rejected(&error, now.instant)),
    }
}

fn published() -> ConversationBody {
    ConversationBody::unsigned(ResponseType::CanPublishIpnsRecord(
        ps::CanPublishIpnsRecordResponse {},
    ))
}

/// The CAN API and a slot of `can.max_concurrent_requests`; UNSUPPORTED without `[can]`,
/// BUSY when every slot is taken.
fn can_slot(ctx: &View) -> Result<(&CanApi, OwnedSemaphorePermit), Reject> {
    let can = ctx.can.as_ref().ok_or_else(|| {
        Reject::with_details(Status::ErrorUnsupported, "no CAN node is configured")
    })?;
    let slot = can
        .slots
        .clone()
        .try_acquire_owned()
        .map_err(|_| Reject::status(Status::ErrorBusy))?;
    Ok((&can.api, slot))
}

/// The checked-in peer's hosted identity; NOT_FOUND once its agreement was cancelled.
async fn hosted(ctx: &View, peer: &Peer) -> Result<HostedIdentity, Reject> {
    ctx.store
        .hosted_identity(peer.id)
        .await?
        .filter(|identity| !identity.cancelled)
        .ok_or(Reject::status(Status::ErrorNotFound))
}

/// ERROR_REJECTED with CAN's message as details (spec §8).
fn rejected(error: &CanError, now: Instant) -> Reject {
    if let Some(held_back) = CAN_FAILURES.pass(now) {
        tracing::warn!(held_back, %error, "CAN refused a client's request");
    }
    Reject::with_details(Status::ErrorRejected, error.message())
}

fn store_answer(hash: Vec<u8>) -> ConversationBody {
    ConversationBody::unsigned(ResponseType::CanStoreData(ps::CanStoreDataResponse {
        hash,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;

    #[tokio::test]
    async fn without_a_can_node_client_requests_are_unsupported_after_their_own_checks() {
        let (_dir, ctx) = testing::ctx();
        let peer = Peer::new(ServerKey::generate().public_key().to_vec());
        let foreign = ps::CanStoreDataRequest {
            data: Some(crate::wire::can::CanIdentityData {
                hosting_server_id: vec![9; 32],
                ..Default::default()
            }),
        };
        let answer = can_store_data(&ctx, peer.clone(), foreign, Instant::now()).await;
        assert_eq!(answer.err(), Some(Reject::invalid("data.hostingServerId")));
        let ours = ps::CanStoreDataRequest {
            data: Some(crate::wire::can::CanIdentityData {
                hosting_server_id: ctx.key.network_id().0.to_vec(),
                ..Default::default()
            }),
        };
        let answer = can_store_data(&ctx, peer, ours, Instant::now()).await;
        assert_eq!(
            answer.err().map(|r| r.status),
            Some(Status::ErrorUnsupported)
        );
    }
}
