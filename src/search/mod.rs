//! Profile search (spec §4.18): the in-memory index, the filter dialects, and query execution
//! under time budgets. No sockets, no storage access: callers feed the index and load results.

pub(crate) mod geo;
pub(crate) mod index;
pub(crate) mod regex_type;
mod table;
pub(crate) mod wildcard;

// What other crates (the search bench) use.
pub use geo::distance_m;
pub use regex_type::compile as compile_regex;
pub use wildcard::Wildcard;

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use index::{Filter, Hit, SearchIndex};

use crate::wire::ps;

/// Spec §1.3: the whole regex work of one search may take at most this long; after it every
/// remaining profile counts as not matching.
const REGEX_BUDGET: Duration = Duration::from_secs(1);

/// A validated search.
pub struct Query {
    /// Type wildcard.
    pub kind: Wildcard,
    /// Name wildcard.
    pub name: Wildcard,
    /// Centre (micro-degrees) and radius in metres.
    pub location: Option<(i32, i32, u32)>,
    /// Extra-data regex.
    pub extra_data: Option<regex::Regex>,
    /// Only our own customers.
    pub hosted_only: bool,
    /// Stop after this many matches.
    pub max_total: usize,
}

/// The index behind a lock: searches read in parallel, updates are short writes.
#[derive(Default)]
pub struct Search {
    index: RwLock<SearchIndex>,
}

impl Search {
    /// Runs `change` on the index.
    pub(crate) fn update(&self, change: impl FnOnce(&mut SearchIndex)) {
        change(&mut self.index.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// Servers whose shared profiles are indexed.
    pub(crate) fn neighbor_servers(&self) -> Vec<[u8; 32]> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .neighbor_servers()
    }

    /// Number of (hosted, neighbour) profiles indexed.
    pub fn len(&self) -> (usize, usize) {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Runs a query; returns the hits and whether neighbour profiles were consulted.
    pub fn run(&self, query: &Query) -> (Vec<Hit>, bool) {
        let started = Instant::now();
        let mut checked = 0u32;
        let mut spent = false;
        let mut extra = |text: &str| match &query.extra_data {
            None => true,
            Some(_) if spent => false,
            Some(regex) => {
                checked = checked.wrapping_add(1);
                if checked.is_multiple_of(64) && started.elapsed() > REGEX_BUDGET {
                    spent = true;
                    return false;
                }
                regex.is_match(text)
            }
        };
        let mut filter = Filter {
            kind: &query.kind,
            name: &query.name,
            location: query.location,
            extra_data: &mut extra,
        };
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.search(&mut filter, query.hosted_only, query.max_total)
    }
}

/// Decodes a stored profile; `None` for a record that does not decode.
pub fn decode_profile(bytes: &[u8]) -> Option<ps::ProfileInformation> {
    prost::Message::decode(bytes).ok()
}
