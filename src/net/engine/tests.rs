//! The engine's rules, on simulated time and without sockets.

use super::*;

#[test]
fn every_end_has_its_own_metrics_label() {
    let ends = [
        (End::PeerClosed, "peer_closed"),
        (End::Idle, "timeout_idle"),
        (End::SessionLimit, "timeout_session"),
        (End::Shutdown, "shutdown"),
        (End::FinalAnswer, "final_answer"),
        (End::Replaced, "replaced"),
        (End::Io, "io_error"),
    ];
    assert_eq!(ends.len(), End::LABELS.len());
    for (end, label) in ends {
        assert_eq!(End::LABELS[end.index()], label, "{end:?}");
    }
}

#[test]
fn server_request_ids_follow_the_reference_bitmask() {
    assert_eq!(
        first_server_request_id(RoleSet::of(&[Role::ClCustomer])),
        (16 << 24) + 1
    );
    let shared = RoleSet::of(&[
        Role::SrNeighbor,
        Role::ClNonCustomer,
        Role::ClCustomer,
        Role::ClAppService,
    ]);
    assert_eq!(
        first_server_request_id(shared),
        ((4 + 16 + 32 + 128) << 24) + 1
    );
}
