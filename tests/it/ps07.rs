//! PS07: related identities (spec/tests/PS07.md).

use std::collections::BTreeSet;

use iop_profile_server::crypto::{sha256, verify};
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{
    self, conversation_request::RequestType as Conv, single_request::RequestType as Single,
    single_response::ResponseType,
};
use prost::Message as _;

use crate::kit::*;

/// One query: id, include_invalid, type, issuer index, expected card numbers.
type Check = (u32, bool, &'static str, Option<usize>, BTreeSet<usize>);

const T0: i64 = 1_479_220_556_000;
const T1: i64 = 2_479_220_556_000;

/// CARD(I, R, type, from, to).
pub fn card(
    issuer: &Identity,
    recipient: &Identity,
    kind: &str,
    from: i64,
    to: i64,
) -> ps::SignedRelationshipCard {
    let mut card = ps::RelationshipCard {
        card_id: vec![0; 32],
        version: vec![1, 0, 0],
        r#type: kind.into(),
        valid_from: from,
        valid_to: to,
        issuer_public_key: issuer.public_key(),
        recipient_public_key: recipient.public_key(),
    };
    card.card_id = sha256(&card.encode_to_vec()).to_vec();
    let issuer_signature = issuer.sign(&card.card_id);
    ps::SignedRelationshipCard {
        card: Some(card),
        issuer_signature,
    }
}

/// ADD(n, card, a) on the recipient's connection; returns the application sent.
pub async fn add(
    client: &mut Client,
    id: u32,
    signed: &ps::SignedRelationshipCard,
    application_id: Vec<u8>,
) -> (ps::Response, ps::CardApplicationInformation, Vec<u8>) {
    let application = ps::CardApplicationInformation {
        card_id: signed
            .card
            .as_ref()
            .map(|c| c.card_id.clone())
            .unwrap_or_default(),
        application_id,
    };
    let signature = client.identity.sign(&application.encode_to_vec());
    let request = ps::AddRelatedIdentityRequest {
        card_application: Some(application.clone()),
        signed_card: Some(signed.clone()),
    };
    let answer = client
        .conversation(id, signature.clone(), Conv::AddRelatedIdentity(request))
        .await;
    (answer, application, signature)
}

async fn query(
    client: &mut Client,
    id: u32,
    target: Vec<u8>,
    invalid: bool,
    kind: &str,
    issuer: Option<&Identity>,
) -> Vec<ps::IdentityRelationship> {
    let request = ps::GetIdentityRelationshipsInformationRequest {
        identity_network_id: target,
        include_invalid: invalid,
        r#type: kind.into(),
        specific_issuer: issuer.is_some(),
        issuer_network_id: issuer.map(Identity::network_id).unwrap_or_default(),
    };
    let answer = client
        .single(id, Single::GetIdentityRelationshipsInformation(request))
        .await;
    assert_status(&answer, Status::Ok);
    let ResponseType::GetIdentityRelationshipsInformation(info) = single_body(answer) else {
        panic!("wrong body")
    };
    info.relationships
}

#[tokio::test]
async fn ps07001_add_query_and_remove_cards() {
    let server = TestServer::start(&Options::default()).await;
    let mut p = new_customer(&server).await;
    let mut s = new_customer(&server).await;
    let issuers: Vec<Identity> = (0..5).map(|_| Identity::random()).collect();
    let table: [(usize, &str, i64, i64); 9] = [
        (0, "Card Type A", T0, T1),
        (0, "Card Type A", T0, T0 + 1000),
        (1, "Card Type A", T0, T1),
        (1, "Card Type A", T1 - 1000, T1),
        (2, "Card Type B", T0, T1),
        (3, "Card Type B", T0, T1),
        (3, "Card Type C", T0, T1),
        (3, "Card Type C", T0, T1),
        (4, "Other", T0, T1),
    ];
    // Each sent card as (application, its signature, signed card), for matching results.
    let mut sent = Vec::new();
    for (n, (issuer, kind, from, to)) in table.iter().enumerate() {
        let signed = card(&issuers[*issuer], &p.identity, kind, *from, *to);
        let id = u32::try_from(n).unwrap_or(0) + 3;
        let app = u8::try_from(n + 1).unwrap_or(0);
        let (answer, application, signature) = add(&mut p, id, &signed, vec![app]).await;
        assert_status(&answer, Status::Ok);
        sent.push((application, signature, signed));
    }
    let s_card = card(&issuers[0], &s.identity, "Card Type A", T0, T1);
    let (answer, _, _) = add(&mut s, 3, &s_card, vec![1]).await;
    assert_status(&answer, Status::Ok);

    let cards_of = |relationships: Vec<ps::IdentityRelationship>| -> BTreeSet<usize> {
        relationships
            .into_iter()
            .map(|r| {
                let found = sent.iter().position(|(application, signature, signed)| {
                    r.card_application.as_ref() == Some(application)
                        && &r.card_application_signature == signature
                        && r.card.as_ref() == Some(signed)
                });
                let n = found.expect("one of the cards sent") + 1;
                let signed = r.card.as_ref().expect("card");
                let inner = signed.card.as_ref().expect("inner card");
                assert!(verify(
                    &inner.issuer_public_key,
                    &inner.card_id,
                    &signed.issuer_signature
                ));
                n
            })
            .collect()
    };
    let p_id = p.identity.network_id();
    let all: BTreeSet<usize> = (1..=9).collect();
    let checks: [Check; 9] = [
        (4, true, "", None, all.clone()),
        (5, false, "", None, [1, 3, 5, 6, 7, 8, 9].into()),
        (6, true, "*", None, all.clone()),
        (7, true, "**", None, all.clone()),
        (8, true, "Card*", None, (1..=8).collect()),
        (9, true, "*Type A", None, [1, 2, 3, 4].into()),
        (10, true, "*Type *", None, (1..=8).collect()),
        (11, true, "", Some(0), [1, 2].into()),
        (12, true, "*C", Some(3), [7, 8].into()),
    ];
    for (id, invalid, kind, issuer, expected) in checks {
        let found = query(
            &mut s,
            id,
            p_id.clone(),
            invalid,
            kind,
            issuer.map(|i| &issuers[i]),
        )
        .await;
        assert_eq!(cards_of(found), expected, "query {id}");
    }
    let remove = |app: u8| {
        Conv::RemoveRelatedIdentity(ps::RemoveRelatedIdentityRequest {
            application_id: vec![app],
        })
    };
    assert_status(&p.conversation(12, Vec::new(), remove(2)).await, Status::Ok);
    assert_status(&p.conversation(13, Vec::new(), remove(4)).await, Status::Ok);
    assert_status(
        &p.conversation(14, Vec::new(), remove(4)).await,
        Status::ErrorNotFound,
    );
    assert_eq!(
        cards_of(query(&mut p, 15, p_id.clone(), true, "*Type a*", None).await),
        [1, 3].into()
    );
    assert!(
        query(&mut p, 16, p_id[..10].to_vec(), true, "*Type a*", None)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn ps07003_relationship_quota() {
    let server = TestServer::start(&Options::default()).await;
    let mut p = new_customer(&server).await;
    let issuer = Identity::random();
    let signed = card(&issuer, &p.identity, "Card Type A", T0, T1);
    for i in 0..=100u32 {
        let app = vec![u8::try_from(i).expect("101 cards fit in one byte")];
        let (answer, _, _) = add(&mut p, i + 3, &signed, app).await;
        let expected = if i < 100 {
            Status::Ok
        } else {
            Status::ErrorQuotaExceeded
        };
        assert_status(&answer, expected);
    }
}
