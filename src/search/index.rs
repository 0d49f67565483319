//! The in-memory search index: the searchable fields of every initialised hosted profile and
//! every neighbour profile, kept in step with redb so a search never scans the database.
//!
//! One compact entry per profile: network id, interned lower-cased type, location, and one
//! string holding the lower-cased name followed by the extra data. Thumbnails stay on disk.

use std::collections::{HashMap, HashSet};

use super::wildcard::Wildcard;
use crate::wire::{INTERNAL_TYPE, ps};

/// The searchable part of one profile.
struct Entry {
    id: [u8; 32],
    /// Index into [`Table::servers`] for neighbour profiles; unused for hosted ones.
    server: u32,
    kind: u32,
    latitude: i32,
    longitude: i32,
    /// Byte length of the lower-cased name at the start of `text`.
    name_len: u8,
    /// Lower-cased name, then extra data as written (the regex filter is case-sensitive).
    text: Box<str>,
}

impl Entry {
    fn name(&self) -> &str {
        self.text.get(..usize::from(self.name_len)).unwrap_or("")
    }

    fn extra_data(&self) -> &str {
        self.text.get(usize::from(self.name_len)..).unwrap_or("")
    }
}

/// Profiles of one origin (hosted, or shared by neighbours), with O(1) update and removal.
#[derive(Default)]
struct Table {
    entries: Vec<Entry>,
    positions: HashMap<[u8; 32], u32>,
}

impl Table {
    fn upsert(&mut self, entry: Entry) {
        if let Some(&at) = self.positions.get(&entry.id) {
            self.entries[at as usize] = entry;
            return;
        }
        let at = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.positions.insert(entry.id, at);
        self.entries.push(entry);
    }

    fn remove(&mut self, id: &[u8; 32]) {
        let Some(at) = self.positions.remove(id) else {
            return;
        };
        self.entries.swap_remove(at as usize);
        if let Some(moved) = self.entries.get(at as usize) {
            self.positions.insert(moved.id, at);
        }
    }
}

/// What a search looks for (validated by the handler).
pub struct Filter<'a> {
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
pub struct SearchIndex {
    kinds: Vec<Box<str>>,
    kind_ids: HashMap<Box<str>, u32>,
    servers: Vec<[u8; 32]>,
    server_ids: HashMap<[u8; 32], u32>,
    /// Initialised neighbours, listed in `covered_servers` even when they share nothing.
    covered: HashSet<[u8; 32]>,
    hosted: Table,
    neighbors: Table,
}

impl SearchIndex {
    fn entry(&mut self, id: [u8; 32], server: u32, profile: &ps::ProfileInformation) -> Entry {
        let kind = profile.r#type.to_lowercase().into_boxed_str();
        let next = u32::try_from(self.kinds.len()).unwrap_or(u32::MAX);
        let kind = *self.kind_ids.entry(kind.clone()).or_insert_with(|| {
            self.kinds.push(kind);
            next
        });
        let name = profile.name.to_lowercase();
        // Names are at most 64 bytes; lower-casing can grow a few characters, so cap by bytes.
        let name_len = u8::try_from(name.len()).unwrap_or(u8::MAX);
        let text = format!("{name}{}", profile.extra_data).into_boxed_str();
        Entry {
            id,
            server,
            kind,
            latitude: profile.latitude,
            longitude: profile.longitude,
            name_len,
            text,
        }
    }

    /// Adds or replaces an initialised hosted profile.
    pub fn upsert_hosted(&mut self, id: [u8; 32], profile: &ps::ProfileInformation) {
        let entry = self.entry(id, 0, profile);
        self.hosted.upsert(entry);
    }

    /// Removes a hosted profile (cancelled or purged).
    pub fn remove_hosted(&mut self, id: &[u8; 32]) {
        self.hosted.remove(id);
    }

    /// Adds or replaces a profile shared by neighbour `server`. Placeholder profiles of type
    /// `<INTERNAL>` (spec §5.8) are never searchable.
    pub fn upsert_neighbor(
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
        let entry = self.entry(id, server, profile);
        self.neighbors.upsert(entry);
    }

    /// Records an initialised neighbour, whether or not it shares profiles.
    pub fn add_server(&mut self, server: [u8; 32]) {
        self.intern_server(server);
    }

    /// Records an initialised neighbour and returns its number in [`SearchIndex::servers`].
    fn intern_server(&mut self, server: [u8; 32]) -> u32 {
        self.covered.insert(server);
        let next = u32::try_from(self.servers.len()).unwrap_or(u32::MAX);
        *self.server_ids.entry(server).or_insert_with(|| {
            self.servers.push(server);
            next
        })
    }

    /// Forgets a neighbour and every profile it shares.
    pub fn remove_server(&mut self, server: &[u8; 32]) {
        self.covered.remove(server);
        let Some(&number) = self.server_ids.get(server) else {
            return;
        };
        let ids: Vec<[u8; 32]> = self
            .neighbors
            .entries
            .iter()
            .filter(|entry| entry.server == number)
            .map(|entry| entry.id)
            .collect();
        for id in &ids {
            self.neighbors.remove(id);
        }
    }

    /// Removes a neighbour profile.
    pub fn remove_neighbor(&mut self, id: &[u8; 32]) {
        self.neighbors.remove(id);
    }

    /// Releases spare capacity, after the bulk load at start-up.
    pub fn shrink(&mut self) {
        for table in [&mut self.hosted, &mut self.neighbors] {
            table.entries.shrink_to_fit();
            table.positions.shrink_to_fit();
        }
    }

    /// Number of (hosted, neighbour) profiles.
    pub fn len(&self) -> (usize, usize) {
        (self.hosted.entries.len(), self.neighbors.entries.len())
    }

    /// The initialised neighbours.
    pub fn neighbor_servers(&self) -> Vec<[u8; 32]> {
        self.covered.iter().copied().collect()
    }

    /// Matches hosted profiles first, then (unless `hosted_only`) neighbour profiles, stopping
    /// at `max_total`. Returns the hits and whether neighbour profiles were consulted.
    pub fn search(
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
        for entry in &table.entries {
            if hits.len() >= max {
                return;
            }
            let in_range = filter.location.is_none_or(|(lat, lon, radius)| {
                super::geo::distance_m(lat, lon, entry.latitude, entry.longitude)
                    <= f64::from(radius)
            });
            if kind_ok.get(entry.kind as usize) == Some(&true)
                && filter.name.matches(entry.name())
                && in_range
                && (filter.extra_data)(entry.extra_data())
            {
                let server = shared
                    .then(|| self.servers.get(entry.server as usize).copied())
                    .flatten();
                hits.push(Hit {
                    id: entry.id,
                    server,
                });
            }
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
    fn hosted_come_first_then_neighbours_with_their_server() {
        let mut index = SearchIndex::default();
        index.upsert_neighbor([9; 32], [2; 32], &profile("T", "Far", 0, 0, ""));
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
}
