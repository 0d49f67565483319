//! Every AddRelatedIdentity rule of spec §4.20 in order, with its exact status and details.

use iop_profile_server::crypto::sha256;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
};
use prost::Message as _;

use crate::kit::*;
use crate::ps07::card;

/// A change to a relationship card.
type CardChange = fn(&mut ps::RelationshipCard);

const T0: i64 = 1_479_220_556_000;
const T1: i64 = 2_479_220_556_000;

/// Sends AddRelatedIdentity with the given parts, signing the application unless `signature`.
async fn send(
    client: &mut Client,
    id: u32,
    application: ps::CardApplicationInformation,
    signed: ps::SignedRelationshipCard,
    signature: Option<Vec<u8>>,
) -> ps::Response {
    let signature = signature.unwrap_or_else(|| client.identity.sign(&application.encode_to_vec()));
    let request = ps::AddRelatedIdentityRequest {
        card_application: Some(application),
        signed_card: Some(signed),
    };
    client
        .conversation(id, signature, Conv::AddRelatedIdentity(request))
        .await
}

/// Re-derives the card id after a change, so later checks see a consistent card.
fn reissue(signed: &mut ps::SignedRelationshipCard, issuer: &Identity) {
    let card = signed.card.as_mut().expect("card");
    card.card_id = vec![0; 32];
    card.card_id = sha256(&card.encode_to_vec()).to_vec();
    signed.issuer_signature = issuer.sign(&card.card_id);
}

#[expect(
    clippy::too_many_lines,
    reason = "one request per rule, in the spec's order"
)]
#[tokio::test]
async fn add_related_identity_rules_in_order() {
    let server = TestServer::start(&Options::default()).await;
    let mut p = new_customer(&server).await;
    let issuer = Identity::random();
    let good = card(&issuer, &p.identity, "Card Type A", T0, T1);
    let card_id = good.card.as_ref().expect("card").card_id.clone();
    let application = |app: Vec<u8>| ps::CardApplicationInformation {
        card_id: card_id.clone(),
        application_id: app,
    };

    assert_invalid(
        &send(&mut p, 3, application(vec![]), good.clone(), None).await,
        "cardApplication.applicationId",
    );
    assert_invalid(
        &send(&mut p, 4, application(vec![1; 33]), good.clone(), None).await,
        "cardApplication.applicationId",
    );
    let other = ps::CardApplicationInformation {
        card_id: vec![9; 32],
        application_id: vec![1],
    };
    assert_invalid(
        &send(&mut p, 5, other, good.clone(), None).await,
        "cardApplication.cardId",
    );

    let with = |change: fn(&mut ps::RelationshipCard)| {
        let mut signed = good.clone();
        change(signed.card.as_mut().expect("card"));
        let card_id = signed.card.as_ref().expect("card").card_id.clone();
        (
            signed,
            ps::CardApplicationInformation {
                card_id,
                application_id: vec![1],
            },
        )
    };
    let cases: [(CardChange, &str); 5] = [
        (|c| c.valid_from = T1 + 1, "signedCard.card.validFrom"),
        (
            |c| c.valid_from = 1_234_567_890_123_456_789,
            "signedCard.card.validFrom",
        ),
        (|c| c.valid_to = i64::MAX, "signedCard.card.validTo"),
        (
            |c| c.issuer_public_key = vec![1; 129],
            "signedCard.card.issuerPublicKey",
        ),
        (
            |c| c.recipient_public_key = vec![7; 32],
            "signedCard.card.recipientPublicKey",
        ),
    ];
    for (n, (change, details)) in (6..).zip(cases) {
        let (signed, app) = with(change);
        assert_invalid(&send(&mut p, n, app, signed, None).await, details);
    }
    assert_status(
        &send(
            &mut p,
            11,
            application(vec![1]),
            good.clone(),
            Some(vec![0; 64]),
        )
        .await,
        Status::ErrorInvalidSignature,
    );

    let reissued = |change: fn(&mut ps::RelationshipCard)| {
        let mut signed = good.clone();
        change(signed.card.as_mut().expect("card"));
        reissue(&mut signed, &issuer);
        let card_id = signed.card.as_ref().expect("card").card_id.clone();
        (
            signed,
            ps::CardApplicationInformation {
                card_id,
                application_id: vec![1],
            },
        )
    };
    let (signed, app) = reissued(|c| c.version = vec![1, 0, 1]);
    assert_invalid(
        &send(&mut p, 12, app, signed, None).await,
        "signedCard.card.version",
    );
    let (signed, app) = reissued(|c| c.r#type = "ɐ".repeat(33));
    assert_invalid(
        &send(&mut p, 13, app, signed, None).await,
        "signedCard.card.type",
    );
    let mut wrong_id = good.clone();
    wrong_id.card.as_mut().expect("card").card_id = vec![5; 32];
    let app = ps::CardApplicationInformation {
        card_id: vec![5; 32],
        application_id: vec![1],
    };
    assert_invalid(
        &send(&mut p, 14, app, wrong_id, None).await,
        "signedCard.card.cardId",
    );
    let mut forged = good.clone();
    forged.issuer_signature = Identity::random().sign(&card_id);
    assert_invalid(
        &send(&mut p, 15, application(vec![1]), forged, None).await,
        "signedCard.issuerSignature",
    );

    assert_status(
        &send(&mut p, 16, application(vec![1]), good.clone(), None).await,
        Status::Ok,
    );
    assert_status(
        &send(&mut p, 17, application(vec![1]), good, None).await,
        Status::ErrorAlreadyExists,
    );

    let long_type = ps::GetIdentityRelationshipsInformationRequest {
        r#type: "a".repeat(65),
        ..Default::default()
    };
    assert_invalid(
        &p.single(18, Single::GetIdentityRelationshipsInformation(long_type))
            .await,
        "type",
    );
}
