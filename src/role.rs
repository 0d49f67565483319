//! Server roles (the protocol's "interfaces") and sets of them, as configured per listening port.
//!
//! Pure data: no sockets, no config parsing beyond role names.

use std::fmt;

/// One role a port can serve (spec §2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// Public contact point, plain TCP.
    Primary,
    /// Other profile servers (neighbourhood sharing).
    SrNeighbor,
    /// Identities not hosted here.
    ClNonCustomer,
    /// Hosted identities after check-in.
    ClCustomer,
    /// Legacy application-service relay channel.
    ClAppService,
}

impl Role {
    /// Every role, in the order ListRoles reports them.
    pub const ALL: [Role; 5] = [
        Role::Primary,
        Role::SrNeighbor,
        Role::ClNonCustomer,
        Role::ClCustomer,
        Role::ClAppService,
    ];

    /// The name used in the configuration file.
    pub(crate) fn config_name(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::SrNeighbor => "sr_neighbor",
            Role::ClNonCustomer => "cl_non_customer",
            Role::ClCustomer => "cl_customer",
            Role::ClAppService => "cl_app_service",
        }
    }

    /// Parses a configuration-file role name.
    pub fn from_config_name(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|role| role.config_name() == name)
    }

    /// The `ServerRoleType` value on the wire (spec §2.1).
    pub fn wire_value(self) -> i32 {
        match self {
            Role::Primary => 0,
            Role::SrNeighbor => 2,
            Role::ClNonCustomer => 6,
            Role::ClCustomer => 7,
            Role::ClAppService => 9,
        }
    }

    /// Whether the role is served over TLS (everything but primary).
    pub(crate) fn is_tls(self) -> bool {
        self != Role::Primary
    }

    /// Whether the peers of this role are servers, which get the longer idle timeout (spec §6).
    pub(crate) fn is_server_role(self) -> bool {
        matches!(self, Role::Primary | Role::SrNeighbor)
    }

    fn bit(self) -> u8 {
        match self {
            Role::Primary => 1,
            Role::SrNeighbor => 2,
            Role::ClNonCustomer => 4,
            Role::ClCustomer => 8,
            Role::ClAppService => 16,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.config_name())
    }
}

/// A set of roles, stored as a bit mask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RoleSet(u8);

impl RoleSet {
    /// The empty set.
    pub(crate) const EMPTY: RoleSet = RoleSet(0);

    /// A set holding the given roles.
    pub(crate) fn of(roles: &[Role]) -> RoleSet {
        roles
            .iter()
            .fold(RoleSet::EMPTY, |set, &role| set.with(role))
    }

    /// This set plus `role`.
    #[must_use]
    pub(crate) fn with(self, role: Role) -> RoleSet {
        RoleSet(self.0 | role.bit())
    }

    /// Whether `role` is in the set.
    pub(crate) fn contains(self, role: Role) -> bool {
        self.0 & role.bit() != 0
    }

    /// Whether the two sets share a role.
    pub(crate) fn intersects(self, other: RoleSet) -> bool {
        self.0 & other.0 != 0
    }

    /// The roles in the set, in [`Role::ALL`] order.
    pub(crate) fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL
            .into_iter()
            .filter(move |role| self.contains(*role))
    }

    /// Whether the port is served over TLS: true when any role needs TLS.
    pub(crate) fn is_tls(self) -> bool {
        self.iter().any(Role::is_tls)
    }

    /// Whether the port serves a server-to-server role, so it uses the server idle timeout.
    pub(crate) fn has_server_role(self) -> bool {
        self.iter().any(Role::is_server_role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::from_config_name(role.config_name()), Some(role));
        }
        assert_eq!(Role::from_config_name("clCustomer"), None);
    }

    #[test]
    fn set_operations() {
        let tls = RoleSet::of(&[Role::ClCustomer, Role::ClNonCustomer]);
        assert!(tls.contains(Role::ClCustomer));
        assert!(!tls.contains(Role::Primary));
        assert!(tls.is_tls());
        assert!(!tls.has_server_role());
        assert!(RoleSet::of(&[Role::SrNeighbor]).has_server_role());
        assert!(!RoleSet::of(&[Role::Primary]).is_tls());
        assert_eq!(
            tls.iter().collect::<Vec<_>>(),
            [Role::ClNonCustomer, Role::ClCustomer]
        );
    }
}
