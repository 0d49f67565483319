//! Who is online: hosted identities with an Authenticated connection, and the application
//! services each has enabled in that session (spec §3.1, §4.10).
//!
//! At most one entry per identity; a newer check-in replaces the older connection, which is told
//! to close. Entries are removed by their own connection when it ends, so the map never holds
//! more entries than there are connections.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::outbox::{Command, Link};
use crate::crypto::NetworkId;

/// Spec §4.10: services per session.
pub(crate) const MAX_SERVICES: usize = 50;
/// Spec §4.10: bytes per service name.
pub(crate) const MAX_SERVICE_NAME_LEN: usize = 32;

/// One service name (at most 32 bytes).
pub(crate) type ServiceName = heapless::String<MAX_SERVICE_NAME_LEN>;

/// Why ApplicationServiceAdd failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AddError {
    /// The name at this index is empty or too long.
    Invalid(usize),
    /// The set would exceed [`MAX_SERVICES`].
    Quota,
}

/// The application services of one session, at most 50.
#[derive(Debug, Default, Clone)]
pub(crate) struct ServiceSet(heapless::Vec<ServiceName, MAX_SERVICES>);

impl ServiceSet {
    /// Adds every name or none: the first invalid name, or a union above the limit, changes nothing.
    pub(crate) fn add_all(&mut self, names: &[String]) -> Result<(), AddError> {
        let mut fresh: Vec<ServiceName> = Vec::new();
        for (index, name) in names.iter().enumerate() {
            let parsed = ServiceName::try_from(name.as_str())
                .ok()
                .filter(|n| !n.is_empty());
            let Some(parsed) = parsed else {
                return Err(AddError::Invalid(index));
            };
            if !self.0.contains(&parsed) && !fresh.contains(&parsed) {
                fresh.push(parsed);
            }
        }
        if self.0.len() + fresh.len() > MAX_SERVICES {
            return Err(AddError::Quota);
        }
        for name in fresh {
            // Capacity was checked just above.
            let _ = self.0.push(name);
        }
        Ok(())
    }

    /// Removes a name; false when it was not there.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        match self.0.iter().position(|n| n.as_str() == name) {
            Some(index) => {
                self.0.swap_remove(index);
                true
            }
            None => false,
        }
    }

    /// Whether `name` is enabled.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|n| n.as_str() == name)
    }

    /// The names, in no particular order.
    pub(crate) fn names(&self) -> Vec<String> {
        self.0.iter().map(|n| n.as_str().to_owned()).collect()
    }
}

struct Online {
    link: Link,
    services: ServiceSet,
}

/// The online-presence registry.
#[derive(Default)]
pub(crate) struct Registry {
    online: Mutex<HashMap<NetworkId, Online>>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<NetworkId, Online>> {
        self.online.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `link` as the identity's authenticated connection and tells an older one to close.
    pub(crate) fn check_in(&self, id: NetworkId, link: Link) {
        let previous = self.lock().insert(
            id,
            Online {
                link,
                services: ServiceSet::default(),
            },
        );
        if let Some(previous) = previous {
            // A full or closed queue means the old connection is dying anyway.
            let _ = previous.link.outbox.try_push(Command::Close);
        }
    }

    /// Removes the identity, but only if `connection` is still its registered one.
    pub(crate) fn leave(&self, id: NetworkId, connection: u64) {
        let mut online = self.lock();
        if online
            .get(&id)
            .is_some_and(|o| o.link.connection == connection)
        {
            online.remove(&id);
        }
    }

    /// How many identities have an authenticated connection.
    pub(crate) fn online_count(&self) -> usize {
        self.lock().len()
    }

    /// Whether the identity has an authenticated connection.
    pub(crate) fn is_online(&self, id: NetworkId) -> bool {
        self.lock().contains_key(&id)
    }

    /// The identity's link and enabled services, when online.
    pub(crate) fn online(&self, id: NetworkId) -> Option<(Link, ServiceSet)> {
        self.lock()
            .get(&id)
            .map(|o| (o.link.clone(), o.services.clone()))
    }

    /// Runs `change` on the services of the identity's session on `connection`.
    pub(crate) fn with_services<R>(
        &self,
        id: NetworkId,
        connection: u64,
        change: impl FnOnce(&mut ServiceSet) -> R,
    ) -> Option<R> {
        let mut online = self.lock();
        let entry = online
            .get_mut(&id)
            .filter(|o| o.link.connection == connection)?;
        Some(change(&mut entry.services))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::outbox::Outbox;

    fn names(prefix: &str, count: usize) -> Vec<String> {
        (0..count).map(|i| format!("{prefix}{i}")).collect()
    }

    #[test]
    fn fifty_services_fit_and_the_fifty_first_does_not() {
        let mut set = ServiceSet::default();
        assert_eq!(set.add_all(&names("a", 24)), Ok(()));
        assert_eq!(set.add_all(&names("b", 30)), Err(AddError::Quota));
        assert_eq!(set.names().len(), 24, "a refused add changes nothing");
        assert_eq!(set.add_all(&names("b", 26)), Ok(()));
        assert_eq!(set.add_all(&["c".to_owned()]), Err(AddError::Quota));
        // Names already present do not count twice.
        assert_eq!(set.add_all(&names("a", 24)), Ok(()));
    }

    #[test]
    fn invalid_names_are_reported_by_index() {
        let mut set = ServiceSet::default();
        let long = "x".repeat(33);
        assert_eq!(
            set.add_all(&["ok".into(), String::new()]),
            Err(AddError::Invalid(1))
        );
        assert_eq!(
            set.add_all(&["ok".into(), "ok2".into(), long]),
            Err(AddError::Invalid(2))
        );
        // 16 two-byte characters are 32 bytes: allowed; 17 are not.
        assert_eq!(set.add_all(&["ɐ".repeat(16)]), Ok(()));
        assert_eq!(set.add_all(&["ɐ".repeat(17)]), Err(AddError::Invalid(0)));
        assert!(!set.contains("ok"));
    }

    #[test]
    fn newer_check_in_closes_the_older_connection() {
        let registry = Registry::default();
        let id = NetworkId([1; 32]);
        let (old, mut old_rx) = Outbox::channel(4);
        let (new, _new_rx) = Outbox::channel(4);
        registry.check_in(
            id,
            Link {
                connection: 1,
                outbox: old,
            },
        );
        registry.check_in(
            id,
            Link {
                connection: 2,
                outbox: new,
            },
        );
        assert!(matches!(old_rx.try_recv(), Ok(Command::Close)));
        registry.leave(id, 1);
        assert!(
            registry.is_online(id),
            "the old connection leaving keeps the new one"
        );
        registry.leave(id, 2);
        assert!(!registry.is_online(id));
    }
}
