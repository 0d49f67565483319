//! The profiles of one origin (hosted, or shared by neighbours), stored by column so a search
//! reads only what its filters need: 4 bytes of type and 8 of location per profile for the
//! cheap filters, lower-cased names packed into one buffer for the wildcard, and the rest
//! (id, server, extra data) only for the profiles those let through.
//!
//! Updates and removals are O(1): a removal moves the last profile into the gap, and a changed
//! name is appended to the buffer; the buffer is rewritten once more than half of it is stale.

use std::collections::HashMap;

/// Smallest name buffer worth compacting.
const COMPACT_MIN_BYTES: usize = 64 * 1024;

/// One profile's searchable fields, as the index hands them in.
pub(super) struct Row {
    /// Identity network id.
    pub id: [u8; 32],
    /// The server's number for a neighbour profile; unused for hosted ones.
    pub server: u32,
    /// Interned lower-cased type.
    pub kind: u32,
    /// Latitude, micro-degrees.
    pub latitude: i32,
    /// Longitude, micro-degrees.
    pub longitude: i32,
    /// Lower-cased name.
    pub name: String,
    /// Extra data as written (the regex filter is case-sensitive).
    pub extra_data: Box<str>,
}

/// Where a name sits in the buffer.
#[derive(Clone, Copy)]
struct Span {
    start: u32,
    len: u32,
}

/// The columns; position `i` of every column is the same profile.
#[derive(Default)]
pub(super) struct Table {
    ids: Vec<[u8; 32]>,
    servers: Vec<u32>,
    kinds: Vec<u32>,
    points: Vec<(i32, i32)>,
    spans: Vec<Span>,
    extra: Vec<Box<str>>,
    /// Every name, lower-cased, back to back; stale bytes are left until compaction.
    names: String,
    stale: usize,
    /// Positions by where their names start in `names`, so a match found in one pass over the
    /// buffer leads to its profile. Stale and empty names are not listed.
    by_start: Vec<u32>,
    positions: HashMap<[u8; 32], u32>,
}

impl Table {
    /// Adds `row`, or replaces the profile with its id in place.
    pub(super) fn upsert(&mut self, row: Row) {
        let span = self.append_name(&row.name);
        if let Some(&at) = self.positions.get(&row.id) {
            self.unlist(at);
            if span.len > 0 {
                self.by_start.push(at);
            }
            let at = at as usize;
            self.stale += self.spans[at].len as usize;
            self.servers[at] = row.server;
            self.kinds[at] = row.kind;
            self.points[at] = (row.latitude, row.longitude);
            self.spans[at] = span;
            self.extra[at] = row.extra_data;
        } else {
            let at = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
            self.positions.insert(row.id, at);
            if span.len > 0 {
                self.by_start.push(at);
            }
            self.ids.push(row.id);
            self.servers.push(row.server);
            self.kinds.push(row.kind);
            self.points.push((row.latitude, row.longitude));
            self.spans.push(span);
            self.extra.push(row.extra_data);
        }
        self.compact_if_stale();
    }

    /// Removes the profile `id`; the last profile takes its position.
    pub(super) fn remove(&mut self, id: &[u8; 32]) {
        let Some(at) = self.positions.remove(id) else {
            return;
        };
        self.unlist(at);
        // The last profile moves into the gap: its listing follows it.
        let last = u32::try_from(self.ids.len() - 1).unwrap_or(u32::MAX);
        if last != at
            && let Some(slot) = self.listed_at(last)
        {
            self.by_start[slot] = at;
        }
        let at = at as usize;
        self.stale += self.spans[at].len as usize;
        self.ids.swap_remove(at);
        self.servers.swap_remove(at);
        self.kinds.swap_remove(at);
        self.points.swap_remove(at);
        self.spans.swap_remove(at);
        self.extra.swap_remove(at);
        if let Some(moved) = self.ids.get(at) {
            self.positions
                .insert(*moved, u32::try_from(at).unwrap_or(u32::MAX));
        }
        self.compact_if_stale();
    }

    /// Where position `at` is in `by_start`; empty names are not listed (no two listed names
    /// start at the same byte).
    fn listed_at(&self, at: u32) -> Option<usize> {
        let span = self.spans.get(at as usize)?;
        if span.len == 0 {
            return None;
        }
        let start = span.start;
        let slot = self
            .by_start
            .partition_point(|p| self.spans[*p as usize].start < start);
        (self.by_start.get(slot) == Some(&at)).then_some(slot)
    }

    /// Takes position `at` out of `by_start` (its name is going stale).
    fn unlist(&mut self, at: u32) {
        if let Some(slot) = self.listed_at(at) {
            self.by_start.remove(slot);
        }
    }

    fn append_name(&mut self, name: &str) -> Span {
        let start = u32::try_from(self.names.len()).unwrap_or(u32::MAX);
        self.names.push_str(name);
        Span {
            start,
            len: u32::try_from(name.len()).unwrap_or(u32::MAX),
        }
    }

    /// Rewrites the name buffer in position order once most of it is stale.
    fn compact_if_stale(&mut self) {
        if self.stale * 2 <= self.names.len() || self.names.len() < COMPACT_MIN_BYTES {
            return;
        }
        let mut names = String::with_capacity(self.names.len() - self.stale);
        for span in &mut self.spans {
            let start = u32::try_from(names.len()).unwrap_or(u32::MAX);
            names.push_str(name_in(&self.names, *span));
            span.start = start;
        }
        self.names = names;
        self.stale = 0;
        self.by_start = (0..u32::try_from(self.spans.len()).unwrap_or(u32::MAX))
            .filter(|at| self.spans[*at as usize].len > 0)
            .collect();
    }

    /// Releases spare capacity (after the bulk load at start-up).
    pub(super) fn shrink(&mut self) {
        self.ids.shrink_to_fit();
        self.servers.shrink_to_fit();
        self.kinds.shrink_to_fit();
        self.points.shrink_to_fit();
        self.spans.shrink_to_fit();
        self.extra.shrink_to_fit();
        self.names.shrink_to_fit();
        self.by_start.shrink_to_fit();
        self.positions.shrink_to_fit();
    }

    /// Number of profiles.
    pub(super) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Ids of the profiles whose server number is `server`.
    pub(super) fn ids_of_server(&self, server: u32) -> Vec<[u8; 32]> {
        self.ids
            .iter()
            .zip(&self.servers)
            .filter(|(_, s)| **s == server)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Type numbers by position.
    pub(super) fn kinds(&self) -> &[u32] {
        &self.kinds
    }

    /// Locations by position.
    pub(super) fn points(&self) -> &[(i32, i32)] {
        &self.points
    }

    /// The positions, in increasing order, whose lower-cased name contains what `finder`
    /// looks for: one pass over the packed names instead of a search per name.
    pub(super) fn names_containing(&self, finder: &memchr::memmem::Finder<'_>) -> Vec<u32> {
        let needle = finder.needle().len();
        let mut found: Vec<u32> = Vec::new();
        for offset in finder.find_iter(self.names.as_bytes()) {
            let offset = u32::try_from(offset).unwrap_or(u32::MAX);
            // The listed name starting last at or before the match.
            let slot = self
                .by_start
                .partition_point(|p| self.spans[*p as usize].start <= offset);
            let Some(&at) = slot.checked_sub(1).and_then(|s| self.by_start.get(s)) else {
                continue;
            };
            let span = self.spans[at as usize];
            let within =
                u64::from(offset) + needle as u64 <= u64::from(span.start) + u64::from(span.len);
            if within && found.last() != Some(&at) {
                found.push(at);
            }
        }
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The lower-cased name at position `at`.
    pub(super) fn name(&self, at: usize) -> &str {
        self.spans
            .get(at)
            .map_or("", |span| name_in(&self.names, *span))
    }

    /// The extra data at position `at`.
    pub(super) fn extra_data(&self, at: usize) -> &str {
        self.extra.get(at).map_or("", |text| text)
    }

    /// The id and server number at position `at`.
    pub(super) fn id_and_server(&self, at: usize) -> Option<([u8; 32], u32)> {
        Some((*self.ids.get(at)?, *self.servers.get(at)?))
    }
}

fn name_in(names: &str, span: Span) -> &str {
    let start = span.start as usize;
    names.get(start..start + span.len as usize).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u8, name: &str) -> Row {
        Row {
            id: [id; 32],
            server: 0,
            kind: 0,
            latitude: 0,
            longitude: 0,
            name: name.into(),
            extra_data: "".into(),
        }
    }

    #[test]
    fn renames_and_removals_keep_every_name_in_place_across_compactions() {
        let mut table = Table::default();
        for round in 0..40u32 {
            for id in 0..200u8 {
                table.upsert(row(
                    id,
                    &format!("name {id} round {round} {}", "x".repeat(40)),
                ));
            }
        }
        for id in (0..200u8).step_by(3) {
            table.remove(&[id; 32]);
        }
        assert!(
            table.names.len() < 2 * COMPACT_MIN_BYTES + 200 * 80,
            "compacted"
        );
        assert_eq!(table.len(), 200 - 67);
        for at in 0..table.len() {
            let (id, _) = table.id_and_server(at).expect("a row");
            let expected = format!("name {} round 39 {}", id[0], "x".repeat(40));
            assert_eq!(table.name(at), expected);
            assert_eq!(table.positions[&id] as usize, at);
        }
        let finder = memchr::memmem::Finder::new("round 39");
        let all: Vec<u32> = (0..u32::try_from(table.len()).unwrap_or(0)).collect();
        assert_eq!(table.names_containing(&finder), all);
        let finder = memchr::memmem::Finder::new("name 7 ");
        let sevens = table.names_containing(&finder);
        assert_eq!(sevens.len(), 1);
        assert_eq!(
            table.id_and_server(sevens[0] as usize).map(|(id, _)| id[0]),
            Some(7)
        );
    }

    #[test]
    fn a_match_across_two_names_is_no_match() {
        let mut table = Table::default();
        table.upsert(row(1, "ab"));
        table.upsert(row(2, "cd"));
        let finder = memchr::memmem::Finder::new("bc");
        assert!(table.names_containing(&finder).is_empty());
        table.upsert(row(1, "xbc"));
        assert_eq!(table.names_containing(&finder), vec![0]);
    }
}
