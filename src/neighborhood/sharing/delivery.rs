//! What a follower receives from its queue (spec §5.7 A.6–A.10), decided from one consistent
//! [`DeliveryWindow`]: the queued actions and the current profiles of the identities they name,
//! read in one transaction.
//!
//! Every `add` or `change` item carries the profile bytes and signature of one committed
//! version, never a placeholder; every item is consistent with the follower's copy as the queue
//! implies it (an identity whose first queued action is an `add` is absent there, any other is
//! present). An `add` whose identity has gone by the time of the window (cancelled, purged, or
//! re-registered and not yet initialised) is not sent, and neither are the changes and the
//! removal queued for it: the follower never had it. Those identities are returned so that
//! what lies beyond the window can be taken out of the queue.

use std::collections::HashMap;

use super::batches::{Batch, delete_item, profile_item, refresh_item};
use crate::store::followers::{DeliveryWindow, SharedProfile};
use crate::store::records::ActionKind;
use crate::wire::ps;

/// The update requests for one window.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    /// Each request's items with the last queue position it covers, in order.
    pub requests: Vec<(Vec<ps::SharedProfileUpdateItem>, u64)>,
    /// Identities whose `add` was not sent and whose removal is still queued beyond the window.
    pub unsent: Vec<[u8; 32]>,
}

/// Cuts the window into update requests (see the module notes).
pub(crate) fn plan(window: &DeliveryWindow) -> Plan {
    let mut present: HashMap<[u8; 32], bool> = HashMap::new();
    let mut unsent: Vec<[u8; 32]> = Vec::new();
    let mut requests = Vec::new();
    let mut batch = Batch::default();
    let mut last_seq = 0;
    for action in &window.actions {
        let id = <[u8; 32]>::try_from(action.identity.as_slice()).ok();
        let item = match (action.kind, id) {
            (ActionKind::RefreshNeighborStatus, _) => Some(refresh_item()),
            (kind, Some(id)) => {
                let has = present.entry(id).or_insert(kind != ActionKind::AddProfile);
                let profile = window.profiles.get(&id);
                item_for(kind, id, profile, has, &mut unsent)
            }
            _ => None,
        };
        if let Some(item) = item
            && let Err(item) = batch.push(item)
        {
            requests.push((batch.take(), last_seq));
            // An empty batch takes any item.
            let _ = batch.push(*item);
        }
        last_seq = action.seq;
    }
    requests.push((batch.take(), last_seq));
    requests.retain(|(items, _)| !items.is_empty());
    if requests.is_empty() && !window.actions.is_empty() {
        // Only actions that need no item: an empty request marks them done.
        requests.push((Vec::new(), last_seq));
    }
    Plan { requests, unsent }
}

/// The item for one action about `id`, given whether the follower has it (`has`, updated).
fn item_for(
    kind: ActionKind,
    id: [u8; 32],
    profile: Option<&SharedProfile>,
    has: &mut bool,
    unsent: &mut Vec<[u8; 32]>,
) -> Option<ps::SharedProfileUpdateItem> {
    // A profile whose thumbnail file is lost cannot be sent whole: it counts as gone.
    let sendable = profile.and_then(|p| Some((p, p.thumbnail.clone()?)));
    match kind {
        ActionKind::AddProfile | ActionKind::ChangeProfile => match sendable {
            Some((profile, thumbnail)) => {
                let change = *has;
                *has = true;
                Some(profile_item(profile, thumbnail, change))
            }
            None if !*has && kind == ActionKind::AddProfile => {
                unsent.push(id);
                None
            }
            None => None,
        },
        ActionKind::RemoveProfile => {
            if let Some(at) = unsent.iter().position(|u| *u == id) {
                unsent.swap_remove(at);
                return None;
            }
            let had = std::mem::replace(has, false);
            had.then(|| delete_item(&id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::followers::QueuedAction;

    fn action(seq: u64, kind: ActionKind, id: u8) -> QueuedAction {
        QueuedAction {
            seq,
            kind,
            identity: vec![id; 32],
        }
    }

    fn live(id: u8) -> ([u8; 32], SharedProfile) {
        let profile = SharedProfile {
            id: [id; 32],
            profile: vec![0x2a, 1, id],
            signature: vec![id; 64],
            thumbnail: Some(Vec::new()),
        };
        ([id; 32], profile)
    }

    fn kinds(plan: &Plan) -> Vec<&'static str> {
        use ps::shared_profile_update_item::ActionType;
        let items = plan.requests.iter().flat_map(|(items, _)| items);
        items
            .map(|item| match item.action_type {
                Some(ActionType::Add(_)) => "add",
                Some(ActionType::Change(_)) => "change",
                Some(ActionType::Delete(_)) => "delete",
                Some(ActionType::Refresh(_)) => "refresh",
                None => "none",
            })
            .collect()
    }

    #[test]
    fn an_add_of_an_identity_gone_since_is_dropped_with_its_removal() {
        let window = DeliveryWindow {
            actions: vec![
                action(1, ActionKind::AddProfile, 1),
                action(2, ActionKind::ChangeProfile, 1),
                action(3, ActionKind::RemoveProfile, 1),
                action(4, ActionKind::AddProfile, 2),
            ],
            profiles: [live(2)].into_iter().collect(),
        };
        let plan = plan(&window);
        assert_eq!(kinds(&plan), ["add"]);
        assert!(plan.unsent.is_empty());
        assert_eq!(plan.requests.last().map(|r| r.1), Some(4));
    }

    #[test]
    fn a_removal_beyond_the_window_is_reported() {
        let window = DeliveryWindow {
            actions: vec![action(7, ActionKind::AddProfile, 1)],
            profiles: HashMap::new(),
        };
        let plan = plan(&window);
        assert!(kinds(&plan).is_empty());
        assert_eq!(plan.unsent, vec![[1; 32]]);
        assert_eq!(plan.requests, vec![(Vec::new(), 7)]);
    }

    #[test]
    fn a_present_identity_is_changed_and_deleted_once() {
        let window = DeliveryWindow {
            actions: vec![
                action(1, ActionKind::ChangeProfile, 1),
                action(2, ActionKind::RemoveProfile, 1),
                action(3, ActionKind::RemoveProfile, 1),
                action(4, ActionKind::RefreshNeighborStatus, 0),
            ],
            profiles: [live(1)].into_iter().collect(),
        };
        assert_eq!(kinds(&plan(&window)), ["change", "delete", "refresh"]);
    }
}
