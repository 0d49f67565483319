//! `[[listener]]`: one table per TCP port and the roles it serves.
//!
//! Only the port/role map belongs here; binding the ports is `runtime`'s job.

use serde::Deserialize;

use super::Problem;
use crate::role::{Role, RoleSet};

/// One `[[listener]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    port: u16,
    roles: Vec<String>,
}

/// One listening port and the roles it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenerConfig {
    /// TCP port; 0 lets the system choose (used by tests).
    pub port: u16,
    /// Roles served on the port.
    pub roles: RoleSet,
}

/// The documented default: primary on 16987, every other role on 16988.
pub(super) fn default_listeners() -> Vec<RawListener> {
    let tls_roles = [
        "sr_neighbor",
        "cl_non_customer",
        "cl_customer",
        "cl_app_service",
    ];
    vec![
        RawListener {
            port: 16987,
            roles: vec!["primary".into()],
        },
        RawListener {
            port: 16988,
            roles: tls_roles.map(String::from).to_vec(),
        },
    ]
}

/// Checks every listener: known roles, each role on one port only, no port twice, primary
/// served somewhere and never together with a TLS role.
pub(super) fn check(raw: &[RawListener], problems: &mut Vec<Problem>) -> Vec<ListenerConfig> {
    let mut listeners = Vec::new();
    let mut seen = RoleSet::EMPTY;
    if raw.is_empty() {
        problems.push(Problem::new("listener", "at least one listener is needed"));
    }
    for (index, listener) in raw.iter().enumerate() {
        let key = format!("listener[{index}]");
        let roles = check_roles(&key, &listener.roles, seen, problems);
        if listener.port != 0 && raw[..index].iter().any(|other| other.port == listener.port) {
            problems.push(Problem::new(
                format!("{key}.port"),
                format!("port {} is used by another listener", listener.port),
            ));
        }
        seen = roles.iter().fold(seen, RoleSet::with);
        listeners.push(ListenerConfig {
            port: listener.port,
            roles,
        });
    }
    if !raw.is_empty() && !seen.contains(Role::Primary) {
        problems.push(Problem::new(
            "listener",
            "one listener must serve the primary role",
        ));
    }
    listeners
}

/// The roles of one listener (`key` is `listener[N]`); `seen` holds the roles of earlier ones.
fn check_roles(key: &str, names: &[String], seen: RoleSet, problems: &mut Vec<Problem>) -> RoleSet {
    let key = format!("{key}.roles");
    let mut roles = RoleSet::EMPTY;
    for name in names {
        match Role::from_config_name(name) {
            Some(role) if seen.contains(role) => problems.push(Problem::new(
                &key,
                format!("role '{name}' is already served by another listener"),
            )),
            Some(role) => roles = roles.with(role),
            None => problems.push(Problem::new(
                &key,
                format!("unknown role '{name}' (known: primary, sr_neighbor, cl_non_customer, cl_customer, cl_app_service)"),
            )),
        }
    }
    if names.is_empty() {
        problems.push(Problem::new(&key, "must name at least one role"));
    }
    if roles.contains(Role::Primary) && roles.iter().any(Role::is_tls) {
        problems.push(Problem::new(
            &key,
            "primary is plain TCP and cannot share a port with TLS roles",
        ));
    }
    roles
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::problems;
    use super::*;

    #[test]
    fn default_listeners_split_primary_from_tls() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(config.listeners.len(), 2);
        assert_eq!(config.roles_on_port(16987), RoleSet::of(&[Role::Primary]));
        assert!(config.roles_on_port(16988).contains(Role::ClAppService));
    }

    #[test]
    fn primary_mixed_with_tls_role_is_rejected() {
        let found = problems("[[listener]]\nport = 1\nroles = [\"primary\", \"cl_customer\"]\n");
        assert!(
            found.iter().any(|p| p.key == "listener[0].roles"),
            "{found:?}"
        );
    }

    #[test]
    fn duplicate_port_and_unknown_role_are_both_reported() {
        let text = "test_mode = true\n[[listener]]\nport = 5\nroles = [\"primary\"]\n\
                    [[listener]]\nport = 5\nroles = [\"cl_boss\"]\n";
        let keys: Vec<_> = problems(text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["listener[1].roles", "listener[1].port"]);
    }

    #[test]
    fn role_served_twice_and_missing_primary() {
        let text = "test_mode = true\n[[listener]]\nport = 5\nroles = [\"cl_customer\"]\n\
                    [[listener]]\nport = 6\nroles = [\"cl_customer\"]\n";
        let keys: Vec<_> = problems(text).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["listener[1].roles", "listener"]);
    }
}
