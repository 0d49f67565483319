//! Building blocks for customer tests: register, check in, update a profile (PS04 "UP"), and the
//! PS08 customer driver, which keeps each hosted identity's latest signed state.

use iop_profile_server::crypto::sha256;
use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::{self, conversation_request::RequestType as Conv};
use prost::Message as _;
use tokio::task::JoinSet;

use super::client::{Client, Identity, assert_status, conversation_body};
use super::server::Ports;

/// A test image fixture by file name (tests/fixtures).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/");
    std::fs::read(format!("{path}{name}")).expect("fixture exists")
}

/// "Register K [type]": SC and REG on a fresh clNonCustomer connection, which is then closed.
pub async fn register(server: &impl Ports, identity: &Identity, identity_type: &str) {
    let mut client = Client::tls(server.port(Role::ClNonCustomer)).await;
    client.identity = identity.clone();
    client.start_conversation(1).await;
    let answer = client.register_hosting_as(2, identity_type).await;
    assert_status(&answer, Status::Ok);
}

/// "Check in K": SC and CI on a new clCustomer connection, which is returned open.
pub async fn check_in(server: &impl Ports, identity: &Identity) -> Client {
    let mut client = Client::tls(server.port(Role::ClCustomer)).await;
    client.identity = identity.clone();
    client.start_conversation(1).await;
    assert_status(&client.check_in(2).await, Status::Ok);
    client
}

/// Register and check in a fresh identity of type "Test Type".
pub async fn new_customer(server: &impl Ports) -> Client {
    let identity = Identity::random();
    register(server, &identity, "Test Type").await;
    check_in(server, &identity).await
}

/// The UP defaults for `identity`.
pub fn default_profile(identity: &Identity) -> ps::ProfileInformation {
    ps::ProfileInformation {
        version: vec![1, 0, 0],
        public_key: identity.public_key(),
        r#type: "Test Type".into(),
        name: "Test Name".into(),
        latitude: 1,
        longitude: 2,
        ..Default::default()
    }
}

/// An UpdateProfile request with images and flags; signed over the profile as given.
#[derive(Clone, Default)]
pub struct Update {
    /// The profile to send.
    pub profile: ps::ProfileInformation,
    /// `profile_image` bytes.
    pub profile_image: Vec<u8>,
    /// `thumbnail_image` bytes.
    pub thumbnail_image: Vec<u8>,
    /// `no_propagation`.
    pub no_propagation: bool,
}

impl Update {
    /// Defaults for `identity` with no images.
    pub fn new(identity: &Identity) -> Update {
        Update {
            profile: default_profile(identity),
            ..Update::default()
        }
    }

    /// Sets the profile image and its hash.
    pub fn with_profile_image(mut self, image: Vec<u8>) -> Update {
        self.profile.profile_image_hash = sha256(&image).to_vec();
        self.profile_image = image;
        self
    }

    /// Sets the thumbnail and its hash.
    pub fn with_thumbnail(mut self, image: Vec<u8>) -> Update {
        self.profile.thumbnail_image_hash = sha256(&image).to_vec();
        self.thumbnail_image = image;
        self
    }

    /// The request body and the valid signature over its profile.
    pub fn signed(&self, identity: &Identity) -> (Vec<u8>, Conv) {
        let signature = identity.sign(&self.profile.encode_to_vec());
        (signature, self.body())
    }

    /// The request body.
    pub fn body(&self) -> Conv {
        Conv::UpdateProfile(ps::UpdateProfileRequest {
            profile: Some(self.profile.clone()),
            profile_image: self.profile_image.clone(),
            thumbnail_image: self.thumbnail_image.clone(),
            no_propagation: self.no_propagation,
        })
    }
}

impl Client {
    /// UP(n): sends `update` signed by this client's identity.
    pub async fn update_profile(&mut self, id: u32, update: &Update) -> ps::Response {
        let (signature, body) = update.signed(&self.identity.clone());
        self.conversation(id, signature, body).await
    }

    /// GPI(n, img) for `network_id`.
    pub async fn profile_information(
        &mut self,
        id: u32,
        network_id: Vec<u8>,
        images: bool,
        services: bool,
    ) -> ps::Response {
        let request = ps::GetProfileInformationRequest {
            identity_network_id: network_id,
            include_profile_image: images,
            include_thumbnail_image: images,
            include_application_services: services,
        };
        self.single(
            id,
            ps::single_request::RequestType::GetProfileInformation(request),
        )
        .await
    }

    /// REG(n, type).
    pub async fn register_hosting_as(&mut self, id: u32, identity_type: &str) -> ps::Response {
        let contract = ps::HostingPlanContract {
            plan_id: Vec::new(),
            identity_public_key: self.identity.public_key(),
            start_time: super::client::now_ms(),
            identity_type: identity_type.into(),
        };
        self.register_contract(id, contract).await
    }

    /// RegisterHosting with `contract`, signed by the identity; checks the echo on success.
    pub async fn register_contract(
        &mut self,
        id: u32,
        contract: ps::HostingPlanContract,
    ) -> ps::Response {
        let signature = self.identity.sign(&contract.encode_to_vec());
        let request = ps::RegisterHostingRequest {
            contract: Some(contract.clone()),
        };
        let answer = self
            .conversation(id, signature, Conv::RegisterHosting(request))
            .await;
        if answer.status == Status::Ok as i32 {
            let (server_signature, body) = conversation_body(answer.clone());
            let ps::conversation_response::ResponseType::RegisterHosting(registered) = body else {
                panic!("RegisterHosting answered with another body");
            };
            assert_eq!(
                registered.contract.as_ref(),
                Some(&contract),
                "contract echoed unchanged"
            );
            let key = self.server_key.clone();
            let valid = iop_profile_server::crypto::verify(
                &key,
                &contract.encode_to_vec(),
                &server_signature,
            );
            assert!(valid, "server signs the contract");
        }
        answer
    }
}

/// The GetProfileInformation body of a successful answer.
pub fn profile_information(answer: ps::Response) -> ps::GetProfileInformationResponse {
    match super::client::single_body(answer) {
        ps::single_response::ResponseType::GetProfileInformation(info) => info,
        other => panic!("expected GetProfileInformation, got {other:?}"),
    }
}

/// A hosted identity as the PS08 customer driver knows it (PS08 §1.2): its latest profile, the
/// signature sent with it, its images and whether it is still live.
#[derive(Clone)]
pub struct Hosted {
    /// The key pair.
    pub identity: Identity,
    /// The latest `ProfileInformation` sent.
    pub profile: ps::ProfileInformation,
    /// The signature sent with it.
    pub signature: Vec<u8>,
    /// The current profile image (empty when none).
    pub profile_image: Vec<u8>,
    /// The current thumbnail (empty when none).
    pub thumbnail: Vec<u8>,
    /// False once the hosting agreement is cancelled.
    pub live: bool,
}

impl Hosted {
    /// "Create an identity": register with the profile's type, check in and initialise.
    pub async fn create(server: &impl Ports, identity: Identity, update: Update) -> Hosted {
        register(server, &identity, &update.profile.r#type).await;
        let mut hosted = Hosted {
            identity,
            profile: ps::ProfileInformation::default(),
            signature: Vec::new(),
            profile_image: Vec::new(),
            thumbnail: Vec::new(),
            live: true,
        };
        hosted.send(server, update).await;
        hosted
    }

    /// "Change": after a fresh check-in, sends the full new state (images re-sent whenever their
    /// hashes are set) and records it.
    pub async fn change(&mut self, server: &impl Ports, update: Update) {
        assert_eq!(
            update.profile.r#type, self.profile.r#type,
            "type is unchanged"
        );
        self.send(server, update).await;
    }

    /// "Cancel": after a fresh check-in, CancelHostingAgreement without redirect.
    pub async fn cancel(&mut self, server: &impl Ports) {
        let mut client = check_in(server, &self.identity).await;
        let cancel = Conv::CancelHostingAgreement(ps::CancelHostingAgreementRequest::default());
        assert_status(
            &client.conversation(3, Vec::new(), cancel).await,
            Status::Ok,
        );
        self.live = false;
    }

    /// A profile signed by its owner but never sent to a server: what a simulated neighbour
    /// shares.
    pub fn signed(identity: Identity, update: Update) -> Hosted {
        Hosted {
            signature: identity.sign(&update.profile.encode_to_vec()),
            identity,
            profile: update.profile,
            profile_image: update.profile_image,
            thumbnail: update.thumbnail_image,
            live: true,
        }
    }

    /// The identity's network id.
    pub fn network_id(&self) -> Vec<u8> {
        self.identity.network_id()
    }

    /// An update that sends the current state again; recipes change it from here.
    pub fn update(&self) -> Update {
        Update {
            profile: self.profile.clone(),
            profile_image: self.profile_image.clone(),
            thumbnail_image: self.thumbnail.clone(),
            no_propagation: false,
        }
    }

    async fn send(&mut self, server: &impl Ports, update: Update) {
        let mut client = check_in(server, &self.identity).await;
        let (signature, body) = update.signed(&self.identity);
        assert_status(
            &client.conversation(3, signature.clone(), body).await,
            Status::Ok,
        );
        self.signature = signature;
        self.profile = update.profile;
        self.profile_image = update.profile_image;
        self.thumbnail = update.thumbnail_image;
    }
}

/// How many identities the driver creates at the same time (PS08 §1.2).
const PARALLEL_CREATIONS: usize = 8;

/// Creates every identity of `wanted`, [`PARALLEL_CREATIONS`] at a time; keeps their order.
pub async fn create_all(server: &impl Ports, wanted: Vec<(Identity, Update)>) -> Vec<Hosted> {
    let ports = ClientPorts {
        non_customer: server.port(Role::ClNonCustomer),
        customer: server.port(Role::ClCustomer),
    };
    let mut running = JoinSet::new();
    let mut done = Vec::with_capacity(wanted.len());
    for (index, (identity, update)) in wanted.into_iter().enumerate() {
        if running.len() == PARALLEL_CREATIONS {
            done.push(
                running
                    .join_next()
                    .await
                    .expect("a task")
                    .expect("creation"),
            );
        }
        running.spawn(async move { (index, Hosted::create(&ports, identity, update).await) });
    }
    while let Some(finished) = running.join_next().await {
        done.push(finished.expect("creation"));
    }
    done.sort_by_key(|(index, _)| *index);
    done.into_iter().map(|(_, hosted)| hosted).collect()
}

/// The two client ports, copied so that creation tasks own them.
#[derive(Clone, Copy)]
struct ClientPorts {
    non_customer: u16,
    customer: u16,
}

impl Ports for ClientPorts {
    fn port(&self, role: Role) -> u16 {
        match role {
            Role::ClNonCustomer => self.non_customer,
            Role::ClCustomer => self.customer,
            other => panic!("the customer driver does not use {other:?}"),
        }
    }
}

/// Indices of `count` distinct live identities of `hosted`, picked at random.
pub fn pick_live(hosted: &[Hosted], count: usize) -> Vec<usize> {
    let live: Vec<usize> = (0..hosted.len()).filter(|&i| hosted[i].live).collect();
    super::profiles::pick(live.len(), count)
        .into_iter()
        .map(|k| live[k])
        .collect()
}
