//! The operator's one-line summary of the running server, for systemd's `STATUS=` (shown by
//! `systemctl status`): `serving as <id>: 12 hosted, 3 online, 5 neighbours, LOC ok, CAN ok`.

use std::sync::{Arc, Weak};

use crate::context::{Ctx, LinkState};
use crate::crypto::NetworkId;
use crate::store::StoreError;

/// The counts and link states of the status line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Headline {
    /// Hosted identity rows (cancelled ones awaiting purge included).
    pub hosted: u64,
    /// Identities checked in now.
    pub online: usize,
    /// Neighbour servers known.
    pub neighbors: usize,
    /// The LOC link.
    pub loc: LinkState,
    /// The CAN link.
    pub can: LinkState,
}

fn link_text(name: &str, state: LinkState) -> String {
    match state {
        LinkState::Off => format!("no {name}"),
        LinkState::Down => format!("{name} down"),
        LinkState::Up => format!("{name} ok"),
    }
}

/// The status line for `headline` of the server `id`.
pub fn line(id: NetworkId, headline: &Headline) -> String {
    format!(
        "serving as {id}: {} hosted, {} online, {} neighbours, {}, {}",
        headline.hosted,
        headline.online,
        headline.neighbors,
        link_text("LOC", headline.loc),
        link_text("CAN", headline.can)
    )
}

async fn headline(ctx: &Ctx) -> Result<Headline, StoreError> {
    Ok(Headline {
        hosted: ctx.store.hosted_count().await?,
        online: ctx.hub.registry.online_count(),
        neighbors: ctx.store.neighbors().await?.len(),
        loc: ctx.peers.links.loc(crate::clock::unix_ms()),
        can: ctx.peers.links.can(),
    })
}

/// Reads the status line of a running server without keeping it (or its database) alive.
#[derive(Clone, Debug)]
pub struct StatusSource(pub(super) Weak<Ctx>);

impl StatusSource {
    /// The current line; `None` once the server has stopped.
    pub async fn line(&self) -> Option<String> {
        let ctx: Arc<Ctx> = self.0.upgrade()?;
        let id = ctx.key.network_id();
        match headline(&ctx).await {
            Ok(headline) => Some(line(id, &headline)),
            Err(error) => Some(format!("serving as {id}: database error: {error}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_counts_and_links() {
        let id = NetworkId([0xab; 32]);
        let headline = Headline {
            hosted: 12,
            online: 3,
            neighbors: 5,
            loc: LinkState::Up,
            can: LinkState::Down,
        };
        let text = line(id, &headline);
        assert!(text.starts_with(&format!("serving as {id}: ")), "{text}");
        assert!(
            text.ends_with(": 12 hosted, 3 online, 5 neighbours, LOC ok, CAN down"),
            "{text}"
        );
        let off = Headline {
            loc: LinkState::Off,
            can: LinkState::Off,
            ..headline
        };
        assert!(line(id, &off).ends_with("no LOC, no CAN"));
    }
}
