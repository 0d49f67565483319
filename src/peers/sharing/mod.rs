//! The sharing side: the snapshot a new follower receives, then live delivery of our hosted
//! profiles' changes to every initialised follower.

pub(crate) mod followers;
pub(crate) mod snapshot;
