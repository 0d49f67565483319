//! The in-memory search index: the searchable fields of every initialised hosted profile and
//! every neighbour profile, kept in step with redb so a search never scans the database.
//!
//! Each origin's profiles sit in a [`Table`] by column (interned lower-cased type, location,
//! packed lower-cased names, extra data). A search tests the cheap filters first, type by
//! number and location against a bounding box, and reaches the name, the exact distance and
//! the regex only for profiles those let through. Thumbnails stay on disk.

use std::collections::{HashMap, HashSet};

use super::geo::{Bounds, distance_m};
use super::table::{Row, Table};
use super::wildcard::{Matcher, Wildcard};
use crate::wire::{INTERNAL_TYPE, ps};

/// What a search looks for (validated by the handler).
pub(crate) struct Filter<'a> {
    /// Type wildcard.
    pub kind: &'a Wildcard,
    /// Name wildcard.
    pub name: &'a Wildcard,
    /// Centre (micro-degrees) and radius in metres.
    pub location: Option<(i32, i32, u32)>,
    /// Extra-data matcher; returns false once the regex budget is spent.
    pub extra_data: &'a mut dyn FnMut(&str) -> bool,
}

/// One search result: the profile's id and, for a neighbour profile, its hosting server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Identity network id.
    pub id: [u8; 32],
    /// Hosting server for neighbour profiles; `None` for our own.
    pub server: Option<[u8; 32]>,
}

/// The whole index.
#[derive(Default)]
pub(crate) struct SearchIndex {
    kinds: Vec<Box<str>>,
    kind_ids: HashMap<Box<str>, u32>,
    servers: Vec<[u8; 32]>,
    /// Whether the server of each number in `servers` is initialised: the profiles of one
    /// still initialising are indexed as they arrive, but found only once it finished.
    visible: Vec<bool>,
    server_ids: HashMap<[u8; 32], u32>,
    /// Initialised neighbours, listed in `covered_servers` even when they share nothing.
    covered: HashSet<[u8; 32]>,
    hosted: Table,
    neighbors: Table,
}

impl SearchIndex {
    fn row(&mut self, id: [u8; 32], server: u32, profile: &ps::ProfileInformation) -> Row {
        let kind = profile.r#type.to_lowercase().into_boxed_str();
        let next = u32::try_from(self.kinds.len()).unwrap_or(u32::MAX);
        let kind = *self.kind_ids.entry(kind.clone()).or_insert_with(|| {
            self.kinds.push(kind);
            next
        });
        Row {
            id,
            server,
            kind,
            latitude: profile.latitude,
            longitude: profile.longitude,
            name: profile.name.to_lowercase(),
            extra_data: profile.extra_data.as_str().into(),
        }
    }

    /// Adds or replaces an initialised hosted profile.
    pub(crate) fn upsert_hosted(&mut self, id: [u8; 32], profile: &ps::ProfileInformation) {
        let row = self.row(id, 0, profile);
        self.hosted.upsert(row);
    }

    /// Removes a hosted profile (cancelled or purged).
    pub(crate) fn remove_hosted(&mut self, id: &[u8; 32]) {
        self.hosted.remove(id);
    }

    /// Adds or replaces a profile shared by neighbour `server`, found once `server` is added
    /// ([`SearchIndex::add_server`]). Placeholder profiles of type `<INTERNAL>` (spec §5.8) are
    /// never searchable.
    pub(crate) fn upsert_neighbor(
        &mut self,
        server: [u8; 32],
        id: [u8; 32],
        profile: &ps::ProfileInformation,
    ) {
        if profile.r#type == INTERNAL_TYPE {
            self.neighbors.remove(&id);
            return;
        }
        let server = self.intern_server(server);
        let row = self.row(id, server, profile);
        self.neighbors.upsert(row);
    }

    /// Records an initialised neighbour, whether or not it shares profiles: its profiles are
    /// found from now on.
    pub(crate) fn add_server(&mut self, server: [u8; 32]) {
        let number = self.intern_server(server);
        self.covered.insert(server);
        if let Some(visible) = self.visible.get_mut(number as usize) {
            *visible = true;
        }
    }

    /// The number of `server` in [`SearchIndex::servers`], new ones not yet visible.
    fn intern_server(&mut self, server: [u8; 32]) -> u32 {
        let next = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        *self.server_ids.entry(server).or_insert_with(|| {
            self.servers.push(server);
            self.visible.push(false);
            next
        })
    }

    /// Forgets a neighbour and every profile it shares.
    pub(crate) fn remove_server(&mut self, server: &[u8; 32]) {
        self.covered.remove(server);
        let Some(&number) = self.server_ids.get(server) else {
            return;
        };
        if let Some(visible) = self.visible.get_mut(number as usize) {
            *visible = false;
        }
        for id in &self.neighbors.ids_of_server(number) {
            self.neighbors.remove(id);
        }
    }

    /// Removes a neighbour profile.
    pub(crate) fn remove_neighbor(&mut self, id: &[u8; 32]) {
        self.neighbors.remove(id);
    }

    /// Releases spare capacity, after the bulk load at start-up.
    pub(crate) fn shrink(&mut self) {
        self.hosted.shrink();
        self.neighbors.shrink();
    }

    /// Number of (hosted, neighbour) profiles.
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.hosted.len(), self.neighbors.len())
    }

    /// The initialised neighbours.
    pub(crate) fn neighbor_servers(&self) -> Vec<[u8; 32]> {
        self.covered.iter().copied().collect()
    }

    /// Matches hosted profiles first, then (unless `hosted_only`) neighbour profiles, stopping
    /// at `max_total`. Returns the hits and whether neighbour profiles were consulted.
    pub(crate) fn search(
        &self,
        filter: &mut Filter<'_>,
        hosted_only: bool,
        max_total: usize,
    ) -> (Vec<Hit>, bool) {
        let mut hits = Vec::new();
        self.scan(&self.hosted, filter, max_total, &mut hits, false);
        let consult = !hosted_only && hits.len() < max_total;
        if consult {
            self.scan(&self.neighbors, filter, max_total, &mut hits, true);
        }
        (hits, consult)
    }

    fn scan(
        &self,
        table: &Table,
        filter: &mut Filter<'_>,
        max: usize,
        hits: &mut Vec<Hit>,
        shared: bool,
    ) {
        let kind_ok: Vec<bool> = self.kinds.iter().map(|k| filter.kind.matches(k)).collect();
        let bounds = filter
            .location
            .map(|(lat, lon, radius)| Bounds::around(lat, lon, radius));
        let name = filter.name.matcher();
        // A "contains" name is found in one pass over the packed names; the other filters then
        // look only at those profiles.
        let candidates = match &name {
            Matcher::Contains(finder) => Some(table.names_containing(finder)),
            Matcher::Plain(_) => None,
        };
        let all = 0..u32::try_from(table.len()).unwrap_or(u32::MAX);
        let positions: Box<dyn Iterator<Item = u32>> = match &candidates {
            Some(found) => Box::new(found.iter().copied()),
            None => Box::new(all),
        };
        for at in positions {
            let at = at as usize;
            if hits.len() >= max {
                return;
            }
            let (Some(kind), Some(&(latitude, longitude))) =
                (table.kinds().get(at), table.points().get(at))
            else {
                continue;
            };
            if kind_ok.get(*kind as usize) != Some(&true)
                || bounds.is_some_and(|b| !b.contains(latitude, longitude))
                || (candidates.is_none() && !name.matches(table.name(at)))
            {
                continue;
            }
            let in_range = filter.location.is_none_or(|(lat, lon, radius)| {
                distance_m(lat, lon, latitude, longitude) <= f64::from(radius)
            });
            if !in_range || !(filter.extra_data)(table.extra_data(at)) {
                continue;
            }
            let Some((id, server)) = table.id_and_server(at) else {
                continue;
            };
            if shared && self.visible.get(server as usize) != Some(&true) {
                continue;
            }
            let server = shared
                .then(|| self.servers.get(server as usize).copied())
                .flatten();
            hits.push(Hit { id, server });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(kind: &str, name: &str, lat: i32, lon: i32, extra: &str) -> ps::ProfileInformation {
        ps::ProfileInformation {
            r#type: kind.into(),
            name: name.into(),
            latitude: lat,
            longitude: lon,
            extra_data: extra.into(),
            ..Default::default()
        }
    }

    fn search(
        index: &SearchIndex,
        kind: &str,
        name: &str,
        location: Option<(i32, i32, u32)>,
    ) -> Vec<Hit> {
        let (kind, name) = (Wildcard::new(kind), Wildcard::new(name));
        let mut any = |_: &str| true;
        let mut filter = Filter {
            kind: &kind,
            name: &name,
            location,
            extra_data: &mut any,
        };
        index.search(&mut filter, false, 100).0
    }

    #[test]
    fn a_neighbors_profiles_are_found_only_while_it_is_initialised() {
        let mut index = SearchIndex::default();
        index.upsert_neighbor([9; 32], [2; 32], &profile("T", "Far", 0, 0, ""));
        assert!(
            search(&index, "", "", None).is_empty(),
            "still initialising"
        );
        assert!(index.neighbor_servers().is_empty());
        index.add_server([9; 32]);
        assert_eq!(search(&index, "", "", None).len(), 1);
        assert_eq!(index.neighbor_servers(), [[9; 32]]);
        index.remove_server(&[9; 32]);
        index.upsert_neighbor([9; 32], [3; 32], &profile("T", "Again", 0, 0, ""));
        assert!(
            search(&index, "", "", None).is_empty(),
            "initialising again"
        );
        assert_eq!(index.len().1, 1, "the old profile went with the server");
    }

    #[test]
    fn hosted_come_first_then_neighbors_with_their_server() {
        let mut index = SearchIndex::default();
        index.upsert_neighbor([9; 32], [2; 32], &profile("T", "Far", 0, 0, ""));
        index.add_server([9; 32]);
        index.upsert_hosted([1; 32], &profile("T", "Near", 0, 0, ""));
        let hits = search(&index, "", "", None);
        assert_eq!(
            hits,
            [
                Hit {
                    id: [1; 32],
                    server: None
                },
                Hit {
                    id: [2; 32],
                    server: Some([9; 32])
                }
            ]
        );
    }

    #[test]
    fn updates_and_removals_keep_positions_consistent() {
        let mut index = SearchIndex::default();
        for i in 0..5u8 {
            index.upsert_hosted([i; 32], &profile("T", &format!("n{i}"), 0, 0, ""));
        }
        index.remove_hosted(&[1; 32]);
        index.remove_hosted(&[4; 32]);
        index.upsert_hosted([3; 32], &profile("T", "renamed", 0, 0, ""));
        index.remove_hosted(&[0; 32]);
        let ids: Vec<u8> = search(&index, "", "", None)
            .iter()
            .map(|h| h.id[0])
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&2) && ids.contains(&3));
        assert_eq!(search(&index, "", "renamed", None).len(), 1);
        assert_eq!(index.len(), (2, 0));
    }

    #[test]
    fn filters_combine() {
        let mut index = SearchIndex::default();
        index.upsert_hosted(
            [1; 32],
            &profile("Profile Type A", "Mumbai 1", 18_960_000, 72_820_000, ""),
        );
        index.upsert_hosted(
            [2; 32],
            &profile("Profile Type C", "Mumbai 2", 18_961_000, 72_820_000, ""),
        );
        assert_eq!(search(&index, "*type c", "mumbai*", None).len(), 1);
        assert_eq!(
            search(&index, "", "", Some((18_961_000, 72_820_000, 10))).len(),
            1
        );
        assert_eq!(
            search(&index, "", "", Some((18_961_000, 72_820_000, 5000))).len(),
            2
        );
    }

    mod against_a_plain_scan {
        use std::collections::HashMap;

        use proptest::prelude::*;

        use super::*;

        /// What the index must find, checked on the original profile as the spec words it.
        fn matches(
            profile: &ps::ProfileInformation,
            kind: &Wildcard,
            name: &Wildcard,
            location: Option<(i32, i32, u32)>,
            needle: &str,
        ) -> bool {
            kind.matches(&profile.r#type.to_lowercase())
                && name.matches(&profile.name.to_lowercase())
                && location.is_none_or(|(lat, lon, radius)| {
                    distance_m(lat, lon, profile.latitude, profile.longitude) <= f64::from(radius)
                })
                && profile.extra_data.contains(needle)
        }

        fn arb_profile() -> impl Strategy<Value = ps::ProfileInformation> {
            let centres = vec![
                (0, 0),
                (47_000_000, 19_000_000),
                (89_990_000, 0),
                (0, 179_990_000),
            ];
            (
                prop::sample::select(vec!["Chat", "chat", "Shop", "Type 1", "Type 10"]),
                "[abAB ]{0,6}",
                prop::sample::select(centres),
                (-300_000..300_000i32, -300_000..300_000i32),
                "[xy]{0,3}",
            )
                .prop_map(|(kind, name, (lat, lon), (north, east), extra)| {
                    ps::ProfileInformation {
                        r#type: kind.into(),
                        name,
                        latitude: (lat + north).clamp(-90_000_000, 90_000_000),
                        longitude: (lon + east + 180_000_000).rem_euclid(360_000_000) - 180_000_000,
                        extra_data: extra,
                        ..Default::default()
                    }
                })
        }

        #[derive(Clone, Debug)]
        enum Change {
            Hosted(u8, ps::ProfileInformation),
            Neighbor(u8, u8, ps::ProfileInformation),
            RemoveHosted(u8),
            RemoveNeighbor(u8),
            RemoveServer(u8),
        }

        fn arb_change() -> impl Strategy<Value = Change> {
            prop_oneof![
                4 => (0..40u8, arb_profile()).prop_map(|(id, p)| Change::Hosted(id, p)),
                4 => (0..3u8, 40..80u8, arb_profile()).prop_map(|(s, id, p)| Change::Neighbor(s, id, p)),
                1 => (0..40u8).prop_map(Change::RemoveHosted),
                1 => (40..80u8).prop_map(Change::RemoveNeighbor),
                1 => (0..3u8).prop_map(Change::RemoveServer),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(400))]
            #[test]
            fn the_index_finds_what_a_plain_scan_finds_in_the_same_order(
                changes in prop::collection::vec(arb_change(), 1..120),
                kind in prop::sample::select(vec!["", "chat", "*1", "type*", "*a*", "Shop"]),
                name in "[abAB *]{0,3}",
                location in prop::option::of((
                    prop::sample::select(vec![(0, 0), (47_000_000, 19_000_000), (89_990_000, 90_000_000), (0, -179_990_000)]),
                    1u32..60_000,
                )),
                needle in "[xy]{0,1}",
                max in 1usize..60,
                hosted_only in any::<bool>(),
            ) {
                let mut index = SearchIndex::default();
                let mut model: HashMap<[u8; 32], (Option<[u8; 32]>, ps::ProfileInformation)> =
                    HashMap::new();
                for change in changes {
                    match change {
                        Change::Hosted(id, profile) => {
                            index.upsert_hosted([id; 32], &profile);
                            model.insert([id; 32], (None, profile));
                        }
                        Change::Neighbor(server, id, profile) => {
                            index.upsert_neighbor([server; 32], [id; 32], &profile);
                            index.add_server([server; 32]);
                            model.insert([id; 32], (Some([server; 32]), profile));
                        }
                        Change::RemoveHosted(id) => {
                            index.remove_hosted(&[id; 32]);
                            model.remove(&[id; 32]);
                        }
                        Change::RemoveNeighbor(id) => {
                            index.remove_neighbor(&[id; 32]);
                            model.remove(&[id; 32]);
                        }
                        Change::RemoveServer(server) => {
                            index.remove_server(&[server; 32]);
                            model.retain(|_, (s, _)| *s != Some([server; 32]));
                        }
                    }
                }
                let location = location.map(|((lat, lon), radius)| (lat, lon, radius));
                let (kind, name) = (Wildcard::new(kind), Wildcard::new(&name));
                let mut contains = |text: &str| text.contains(needle.as_str());
                let mut filter = Filter { kind: &kind, name: &name, location, extra_data: &mut contains };
                let (found, consulted) = index.search(&mut filter, hosted_only, max);

                // The plain scan: every profile in the index's order, hosted first.
                let mut expected = Vec::new();
                let tables = [(&index.hosted, false), (&index.neighbors, true)];
                for (table, shared) in tables {
                    if shared && (hosted_only || expected.len() >= max) {
                        break;
                    }
                    for at in 0..table.len() {
                        let (id, _) = table.id_and_server(at).expect("a row");
                        let (server, profile) = &model[&id];
                        prop_assert_eq!(server.is_some(), shared);
                        if expected.len() < max && matches(profile, &kind, &name, location, &needle) {
                            expected.push(Hit { id, server: *server });
                        }
                    }
                }
                prop_assert_eq!(&found, &expected);
                let (hosted, shared) = index.len();
                prop_assert_eq!(hosted + shared, model.len());
                let hosted_hits = expected.iter().filter(|hit| hit.server.is_none()).count();
                prop_assert_eq!(consulted, !hosted_only && hosted_hits < max);
            }
        }
    }
}
