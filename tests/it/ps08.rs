//! PS08: neighbourhood sharing with the SUT as the sharing server (spec/tests/PS08.md). The tests
//! that need the simulated LOC server are in ps08_loc.rs.
//!
//! Waits are shortened with the settings behind them (PS08 §2.2) and run on tokio's paused clock,
//! so W_idle's 450 s pass at once.

use std::time::Duration;

use iop_profile_server::role::Role;
use iop_profile_server::wire::Status;
use iop_profile_server::wire::ps::conversation_request::RequestType as Conv;
use tokio::time::sleep;

use crate::kit::*;

/// `[neighborhood]` of every PS08 test: short action interval and retry, no initial delay.
const NEIGHBORHOOD: &str =
    "action_interval_secs = 1\naction_retry_secs = 5\ninit_delay_max_secs = 0";
/// W_upd = action_interval_secs + 3 s.
pub(crate) const W_UPD: Duration = Duration::from_secs(1 + 3);
/// W_port = action_retry_secs + 2 × action_interval_secs + 10 s.
const W_PORT: Duration = Duration::from_secs(5 + 2 + 10);
/// W_idle = 1.5 × server_idle_secs (300 s, the default the kit keeps).
const W_IDLE: Duration = Duration::from_secs(450);

/// The base configuration (PS08 §2.1) with the short waits of §2.2, plus `limits`.
pub(crate) fn options(limits: &str) -> Options {
    Options {
        limits: limits.into(),
        neighborhood: NEIGHBORHOOD.into(),
        ..Options::default()
    }
}

/// Starts the SUT with the base configuration plus `limits`, and asks ListRoles.
async fn sut(limits: &str) -> TestServer {
    let server = TestServer::start(&options(limits)).await;
    list_roles(&server).await;
    server
}

/// Requires that S received no update request since the last drain.
#[track_caller]
fn assert_no_updates(simulated: &SimServer) {
    let log = simulated.drain();
    assert!(log.updates.is_empty(), "S received {:?}", log.updates);
}

/// Waits W_upd; S must have received exactly one `kind` item per `expected`, each matching, and
/// nothing else.
async fn expect_updates(simulated: &SimServer, kind: Kind, expected: &[&Hosted]) {
    sleep(W_UPD).await;
    assert_exactly_once(&simulated.drain().items(), kind, expected);
}

/// Waits W_upd; S must have received no update request.
async fn expect_no_updates(simulated: &SimServer) {
    sleep(W_UPD).await;
    assert_no_updates(simulated);
}

/// Creates `count` identities with random profiles and images `images`.
async fn create(server: &TestServer, count: usize, images: &Images) -> Vec<Hosted> {
    create_all(server, random_profiles(count, images)).await
}

/// Cancels `count` random live identities; returns their indices.
async fn cancel_some(server: &TestServer, hosted: &mut [Hosted], count: usize) -> Vec<usize> {
    let picked = pick_live(hosted, count);
    for &i in &picked {
        hosted[i].cancel(server).await;
    }
    picked
}

/// Changes `count` distinct random live identities with `recipe`; returns their indices.
async fn change_some(
    server: &TestServer,
    hosted: &mut [Hosted],
    count: usize,
    recipe: fn(&Hosted) -> Update,
) -> Vec<usize> {
    let picked = pick_live(hosted, count);
    for &i in &picked {
        let update = recipe(&hosted[i]);
        hosted[i].change(server, update).await;
    }
    picked
}

/// The identities at `indices`.
fn at<'a>(hosted: &'a [Hosted], indices: &[usize]) -> Vec<&'a Hosted> {
    indices.iter().map(|&i| &hosted[i]).collect()
}

/// The SUT with hosted identities (set P0 in some tests), N, and S with N's key.
pub(crate) struct Neighborhood {
    pub(crate) server: TestServer,
    images: Images,
    pub(crate) hosted: Vec<Hosted>,
    neighbor: Neighbor,
    pub(crate) simulated: SimServer,
}

impl Neighborhood {
    /// Step 1 of the tests with S: ListRoles, `count` identities with random profiles, S.
    pub(crate) async fn new(count: usize, images: Images) -> Neighborhood {
        let server = sut("").await;
        let hosted = create(&server, count, &images).await;
        let neighbor = Neighbor::random();
        let sut_id = server.network_id().to_vec();
        let simulated = SimServer::start(neighbor.identity.clone(), sut_id).await;
        Neighborhood {
            server,
            images,
            hosted,
            neighbor,
            simulated,
        }
    }

    /// Steps 1–2 of PS08005, PS08016 and PS08028: [`Neighbourhood::new`], then N's first
    /// initialisation completes, exactly once over the identities; N answers Finish and closes.
    async fn followed(count: usize, images: Images) -> Neighborhood {
        let set = Neighborhood::new(count, images).await;
        let items = set.initialise().await.complete().await;
        assert_exactly_once(&items, Kind::Add, &all(&[&set.hosted]));
        set
    }

    /// Verify N; Start(BasePort, BasePort+1) (id 3) → OK.
    pub(crate) async fn initialise(&self) -> Follower {
        self.start_claiming(self.simulated.neighbor_port.into())
            .await
    }

    /// Verify N; Start(BasePort, `neighbor_port`) (id 3) → OK.
    async fn start_claiming(&self, neighbor_port: u32) -> Follower {
        let primary = self.simulated.primary_port.into();
        self.neighbor
            .initialise(&self.server, primary, neighbor_port)
            .await
    }

    /// S is empty so far; `count` new identities each reach S as one matching `add` within
    /// W_upd, and nothing else does.
    async fn create_and_expect_adds(&mut self, count: usize) {
        assert_no_updates(&self.simulated);
        let added = self.create(count).await;
        expect_updates(&self.simulated, Kind::Add, &all(&[&added])).await;
        self.hosted.extend(added);
    }

    /// Creates `count` identities with random profiles.
    pub(crate) async fn create(&self, count: usize) -> Vec<Hosted> {
        create(&self.server, count, &self.images).await
    }
}

/// PS08001 and PS08017: sends the requests with ids `first`, `first + 1`, … on `client`, each
/// after the previous answer, and requires each status with its id. A final ping shows that the
/// connection stayed open and that nothing else arrived.
async fn expect_statuses(client: &mut Client, first: u32, requests: Vec<(Conv, Status)>) {
    let mut ids = first..;
    for ((body, expected), id) in requests.into_iter().zip(&mut ids) {
        let answer = client.conversation(id, Vec::new(), body).await;
        assert_status(&answer, expected);
    }
    client.assert_nothing_before_ping(ids.start).await;
}

#[tokio::test(start_paused = true)]
async fn ps08001_neighborhood_requests_before_verification() {
    let server = sut("").await;
    let mut client = Client::tls(server.port(Role::SrNeighbor)).await;
    let unauthorized = vec![
        (start_request(1, 1, &LOOPBACK), Status::ErrorUnauthorized),
        (finish_request(), Status::ErrorUnauthorized),
        (update_request(Vec::new()), Status::ErrorUnauthorized),
        (stop_request(), Status::ErrorUnauthorized),
    ];
    expect_statuses(&mut client, 1, unauthorized).await;
}

#[tokio::test(start_paused = true)]
async fn ps08002_initialisation_with_an_empty_database() {
    let server = sut("").await;
    let mut follower = Neighbor::random().initialise(&server, 1, 1).await;
    follower.until_finish().await;
    assert_eq!(follower.batches, 0, "no update request before Finish");
    follower.answer_finish().await.expect("answer Finish");
}

#[tokio::test(start_paused = true)]
async fn ps08003_initialisation_shares_a_small_set() {
    let server = sut("").await;
    let neighbor = Neighbor::random();
    let hosted = create_all(&server, standard_set(&Images::jpeg())).await;
    let mut follower = neighbor.initialise(&server, 1, 1).await;
    follower.until_finish().await;
    assert_eq!(follower.batches, 1, "all seven in one update request");
    assert_exactly_once(&follower.items, Kind::Add, &all(&[&hosted]));
    follower.answer_finish().await.expect("answer Finish");
}

#[tokio::test(start_paused = true)]
async fn ps08004_initialisation_shares_a_large_set_in_several_batches() {
    let server = sut("").await;
    let images = Images::jpeg();
    let hosted = create_all(&server, random_profiles_with_images(1000, &images)).await;
    let thumbnails: usize = hosted.iter().map(|h| h.thumbnail.len()).sum();
    assert!(thumbnails > 1 << 20, "thumbnails add up to more than 1 MiB");
    let expected = all(&[&hosted]);
    let mut follower = Neighbor::random().initialise(&server, 1, 1).await;
    follower.until_arrived(&expected).await;
    follower.until_finish().await;
    assert!(
        follower.batches > 1,
        "the set is split into several requests"
    );
    assert_exactly_once(&follower.items, Kind::Add, &expected);
    follower.answer_finish().await.expect("answer Finish");
}

#[tokio::test(start_paused = true)]
async fn ps08005_updates_to_a_follower_stop_and_an_abandoned_re_initialisation() {
    let mut f = Neighborhood::followed(50, Images::jpeg()).await;
    f.create_and_expect_adds(15).await;

    let cancelled = cancel_some(&f.server, &mut f.hosted, 15).await;
    expect_updates(&f.simulated, Kind::Delete, &at(&f.hosted, &cancelled)).await;

    let changed = change_some(&f.server, &mut f.hosted, 25, change_recipe).await;
    expect_updates(&f.simulated, Kind::Change, &at(&f.hosted, &changed)).await;

    let mut stopping = f.neighbor.verify(&f.server).await;
    let answer = stopping.conversation(3, Vec::new(), stop_request()).await;
    assert_status(&answer, Status::Ok);
    drop(stopping);

    assert_no_updates(&f.simulated);
    let more = f.create(5).await;
    f.hosted.extend(more);
    cancel_some(&f.server, &mut f.hosted, 5).await;
    change_some(&f.server, &mut f.hosted, 5, |current| {
        let mut update = current.update();
        update.profile.extra_data = "last change".into();
        update
    })
    .await;
    expect_no_updates(&f.simulated).await;

    let mut follower = f.initialise().await;
    let set_a = f.create(5).await;
    let before = live(&[&f.hosted]);
    follower.until_arrived(&before).await;
    assert_items(&follower.items, Kind::Add, &before, &all(&[&set_a]));
    f.create(5).await;
    drop(follower);
    f.create(5).await;
    expect_no_updates(&f.simulated).await;
}

#[tokio::test(start_paused = true)]
async fn ps08006_follower_limit_reached() {
    let server = sut("max_follower_servers = 1").await;
    let hosted = create(&server, 10, &Images::png()).await;
    let items = Neighbor::random()
        .initialise(&server, 1, 1)
        .await
        .complete()
        .await;
    assert_exactly_once(&items, Kind::Add, &all(&[&hosted]));
    let (_, answer) = Neighbor::random().start(&server, 2, 2).await;
    assert_status(&answer, Status::ErrorRejected);
}

#[tokio::test(start_paused = true)]
async fn ps08008_parallel_initialisation_limit() {
    let server = sut("neighborhood_init_parallelism = 1").await;
    let hosted = create(&server, 10, &Images::png()).await;
    let (n1, n2) = (Neighbor::random(), Neighbor::random());
    let first = n1.initialise(&server, 1, 1).await;
    let (refused, answer) = n2.start(&server, 2, 2).await;
    assert_status(&answer, Status::ErrorBusy);
    drop(refused);
    assert_exactly_once(&first.complete().await, Kind::Add, &all(&[&hosted]));
    let items = n2.initialise(&server, 2, 2).await.complete().await;
    assert_exactly_once(&items, Kind::Add, &all(&[&hosted]));
}

#[tokio::test(start_paused = true)]
async fn ps08009_invalid_start_neighborhood_initialization_values() {
    let server = sut("").await;
    let mut client = Neighbor::random().verify(&server).await;
    let cases: [(u32, u32, &[u8], &str); 8] = [
        (0, 1, &LOOPBACK, "primaryPort"),
        (1, 0, &LOOPBACK, "srNeighborPort"),
        (100_000, 1, &LOOPBACK, "primaryPort"),
        (1, 100_000, &LOOPBACK, "srNeighborPort"),
        (1, 1, &[1, 2, 3], "ipAddress"),
        (1, 1, &[], "ipAddress"),
        (1, 1, &[1, 2, 3, 4, 5], "ipAddress"),
        (
            1,
            1,
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            "ipAddress",
        ),
    ];
    for (id, (primary, neighbor, ip, details)) in (3..).zip(cases) {
        let answer = client
            .conversation(id, Vec::new(), start_request(primary, neighbor, ip))
            .await;
        assert_invalid(&answer, details);
    }
    client.assert_nothing_before_ping(11).await;
}

#[tokio::test(start_paused = true)]
async fn ps08011_profiles_created_during_initialisation_arrive_as_updates_after_finish() {
    let f = Neighborhood::new(10, Images::png()).await;
    let mut follower = f.initialise().await;
    let set_a = f.create(5).await;
    follower.until_arrived(&all(&[&f.hosted])).await;
    let set_b = f.create(5).await;
    follower.until_finish().await;
    assert_no_updates(&f.simulated);
    follower.answer_finish().await.expect("answer Finish");
    let mut stream = follower.items.clone();
    drop(follower);
    let set_c = f.create(5).await;
    sleep(W_UPD).await;
    let received = f.simulated.drain().items();
    assert!(received.iter().all(|item| kind(item) == Kind::Add));
    stream.extend(received);
    let everyone = all(&[&f.hosted, &set_a, &set_b, &set_c]);
    assert_exactly_once(&stream, Kind::Add, &everyone);
}

#[tokio::test(start_paused = true)]
async fn ps08012_follower_claimed_a_dead_sr_neighbor_port() {
    let f = Neighborhood::new(10, Images::png()).await;
    let items = f.start_claiming(1).await.complete().await;
    assert_exactly_once(&items, Kind::Add, &all(&[&f.hosted]));
    assert_no_updates(&f.simulated);
    let added = f.create(5).await;
    let arrived = f
        .simulated
        .wait_until(W_PORT, |log| log.items().len() >= added.len())
        .await;
    assert!(arrived, "the updates reach S within W_port");
    let log = f.simulated.drain();
    assert_exactly_once(&log.items(), Kind::Add, &all(&[&added]));
    assert!(
        log.asked_roles(),
        "the SUT learns the srNeighbor port through ListRoles"
    );
}

#[tokio::test(start_paused = true)]
async fn ps08014_stalled_initialisation_times_out_and_a_fresh_one_succeeds() {
    let server = sut("neighborhood_init_parallelism = 1").await;
    let hosted = create(&server, 10, &Images::png()).await;
    let expected = all(&[&hosted]);
    let neighbor = Neighbor::random();
    let mut stalled = neighbor.initialise(&server, 1, 1).await;
    stalled.until_arrived(&expected).await;
    stalled.until_finish().await;
    assert_exactly_once(&stalled.items, Kind::Add, &expected);
    sleep(W_IDLE).await;
    assert!(
        stalled.is_closed().await,
        "the SUT closes the idle connection"
    );
    let _late = stalled.answer_finish().await;
    drop(stalled);
    let items = neighbor.initialise(&server, 1, 1).await.complete().await;
    assert_exactly_once(&items, Kind::Add, &expected);
}

#[tokio::test(start_paused = true)]
async fn ps08016_follower_rejects_an_update_and_the_sut_stops_sending() {
    let mut f = Neighborhood::followed(10, Images::png()).await;
    f.create_and_expect_adds(5).await;

    f.simulated.set_rejecting(true);
    let one = f.create(1).await;
    sleep(W_UPD).await;
    let log = f.simulated.drain();
    assert_eq!(log.updates.len(), 1, "one update request, not retried");
    assert_eq!(log.updates[0].answer, Status::ErrorRejected);
    assert_exactly_once(&log.items(), Kind::Add, &all(&[&one]));
    f.simulated.set_rejecting(false);

    f.create(5).await;
    expect_no_updates(&f.simulated).await;
}

#[tokio::test(start_paused = true)]
async fn ps08017_neighborhood_requests_without_a_relationship() {
    let server = sut("").await;
    let mut client = Neighbor::random().verify(&server).await;
    let requests = vec![
        (finish_request(), Status::ErrorRejected),
        (update_request(Vec::new()), Status::ErrorRejected),
        (stop_request(), Status::ErrorNotFound),
    ];
    expect_statuses(&mut client, 3, requests).await;
}

#[tokio::test(start_paused = true)]
async fn ps08025_initialisation_abandoned_before_finish_then_retried() {
    let f = Neighborhood::new(10, Images::png()).await;
    let mut abandoned = f.initialise().await;
    let set_a = f.create(5).await;
    abandoned.until_finish().await;
    let set_b = f.create(5).await;
    drop(abandoned);
    sleep(W_UPD).await;
    let set_c = f.create(5).await;
    expect_no_updates(&f.simulated).await;

    let items = f.initialise().await.complete().await;
    let live_before_d = all(&[&f.hosted, &set_a, &set_b, &set_c]);
    assert_exactly_once(&items, Kind::Add, &live_before_d);
    let set_d = f.create(5).await;
    expect_updates(&f.simulated, Kind::Add, &all(&[&set_d])).await;
}

#[tokio::test(start_paused = true)]
async fn ps08026_second_start_from_the_same_neighbor_while_its_initialisation_is_open() {
    let f = Neighborhood::new(10, Images::png()).await;
    let mut first = f.initialise().await;
    first.until_finish().await;
    assert_exactly_once(&first.items, Kind::Add, &all(&[&f.hosted]));
    let set_a = f.create(5).await;

    let (p, s) = (f.simulated.primary_port, f.simulated.neighbor_port);
    let (mut second, answer) = f.neighbor.start(&f.server, p.into(), s.into()).await;
    assert_status(&answer, Status::ErrorAlreadyExists);
    second.assert_nothing_before_ping(4).await;
    drop(second);

    assert_no_updates(&f.simulated);
    first.answer_finish().await.expect("answer Finish");
    drop(first);
    expect_updates(&f.simulated, Kind::Add, &all(&[&set_a])).await;
}

#[tokio::test(start_paused = true)]
async fn ps08028_changes_flagged_no_propagation_are_not_forwarded() {
    let mut f = Neighborhood::followed(50, Images::jpeg()).await;
    f.create_and_expect_adds(15).await;

    f.simulated.drain();
    let flags = loop {
        let flags: Vec<bool> = (0..35).map(|_| chance(50)).collect();
        if flags.contains(&true) && flags.contains(&false) {
            break flags;
        }
    };
    let picked = pick_live(&f.hosted, flags.len());
    let mut propagated = Vec::new();
    for (&i, no_propagation) in picked.iter().zip(flags) {
        let mut update = change_recipe(&f.hosted[i]);
        update.no_propagation = no_propagation;
        f.hosted[i].change(&f.server, update).await;
        if !no_propagation {
            propagated.push(i);
        }
    }
    expect_updates(&f.simulated, Kind::Change, &at(&f.hosted, &propagated)).await;
}
