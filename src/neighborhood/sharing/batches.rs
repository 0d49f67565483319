//! Cutting what a follower receives into update requests (spec §5.7 A.3): as many items as fit
//! in one frame.

use prost::Message as _;

use crate::store::followers::SharedProfile;
use crate::wire::frame::MAX_FRAME_LEN;
use crate::wire::ps::{self, shared_profile_update_item::ActionType};

/// Bytes the items of one request may take: a frame's limit less 32 (spec §5.7 A.3) and room
/// for the envelope around the items (header, ids, tags, lengths).
const ITEM_BUDGET: usize = MAX_FRAME_LEN - 32 - 64;

/// Items gathered for one update request.
#[derive(Debug)]
pub(crate) struct Batch {
    items: Vec<ps::SharedProfileUpdateItem>,
    bytes: usize,
    /// Most items, besides the frame's limit.
    max_items: usize,
}

impl Default for Batch {
    fn default() -> Batch {
        Batch::at_most(usize::MAX)
    }
}

impl Batch {
    /// An empty batch that takes at most `max_items` items.
    pub(crate) fn at_most(max_items: usize) -> Batch {
        Batch {
            items: Vec::new(),
            bytes: 0,
            max_items: max_items.max(1),
        }
    }

    /// Doubles how many items the batch takes.
    pub(crate) fn allow_twice_as_many(&mut self) {
        self.max_items = self.max_items.saturating_mul(2);
    }

    /// Adds `item` when it fits; hands it back when the batch is full (never when empty).
    pub(crate) fn push(
        &mut self,
        item: ps::SharedProfileUpdateItem,
    ) -> Result<(), Box<ps::SharedProfileUpdateItem>> {
        let len = item.encoded_len();
        let cost = 1 + prost::encoding::encoded_len_varint(len as u64) + len;
        let full = self.bytes + cost > ITEM_BUDGET || self.items.len() >= self.max_items;
        if !self.items.is_empty() && full {
            return Err(Box::new(item));
        }
        self.bytes += cost;
        self.items.push(item);
        Ok(())
    }

    /// Whether nothing was added.
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items, leaving the batch empty.
    pub(crate) fn take(&mut self) -> Vec<ps::SharedProfileUpdateItem> {
        self.bytes = 0;
        std::mem::take(&mut self.items)
    }
}

/// An `add` (or, with `change`, a `change`) item carrying a stored profile, exactly the bytes
/// and signature its owner gave, and its thumbnail.
pub(crate) fn profile_item(
    profile: &SharedProfile,
    thumbnail: Vec<u8>,
    change: bool,
) -> ps::SharedProfileUpdateItem {
    let signed_profile = Some(ps::SignedProfileInformation {
        profile: profile.profile.clone(),
        signature: profile.signature.clone(),
    });
    let action = if change {
        ActionType::Change(ps::SharedProfileChangeItem {
            signed_profile,
            thumbnail_image: thumbnail,
        })
    } else {
        ActionType::Add(ps::SharedProfileAddItem {
            signed_profile,
            thumbnail_image: thumbnail,
        })
    };
    ps::SharedProfileUpdateItem {
        action_type: Some(action),
    }
}

/// A `delete` item for identity `id`.
pub(crate) fn delete_item(id: &[u8]) -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Delete(ps::SharedProfileDeleteItem {
            identity_network_id: id.to_vec(),
        })),
    }
}

/// A `refresh` item.
pub(crate) fn refresh_item() -> ps::SharedProfileUpdateItem {
    ps::SharedProfileUpdateItem {
        action_type: Some(ActionType::Refresh(ps::SharedProfileRefreshAllItem {})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn big_item(thumbnail: usize) -> ps::SharedProfileUpdateItem {
        let profile = SharedProfile {
            id: [1; 32],
            profile: ps::ProfileInformation {
                name: "x".into(),
                ..ps::ProfileInformation::default()
            }
            .encode_to_vec(),
            signature: vec![0; 64],
            thumbnail: None,
        };
        profile_item(&profile, vec![7; thumbnail], false)
    }

    #[test]
    fn a_limited_batch_hands_back_the_item_past_its_count_until_allowed_more() {
        let mut batch = Batch::at_most(2);
        assert!(batch.push(refresh_item()).is_ok());
        assert!(batch.push(refresh_item()).is_ok());
        assert!(batch.push(refresh_item()).is_err());
        batch.allow_twice_as_many();
        assert!(batch.push(refresh_item()).is_ok());
        assert!(batch.push(refresh_item()).is_ok());
        assert!(batch.push(refresh_item()).is_err());
        assert_eq!(batch.take().len(), 4);
    }

    #[test]
    fn a_full_batch_hands_the_item_back_and_stays_in_one_frame() {
        let mut batch = Batch::default();
        let mut pushed = 0;
        while batch.push(big_item(5_000)).is_ok() {
            pushed += 1;
        }
        assert!(pushed > 100, "{pushed}");
        let request = ps::NeighborhoodSharedProfileUpdateRequest {
            items: batch.take(),
        };
        // The request plus the largest envelope stays within a frame.
        assert!(request.encoded_len() + 64 < MAX_FRAME_LEN - 32);
        assert!(batch.is_empty());
    }
}
