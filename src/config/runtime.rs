//! `[runtime]` and `[storage]`: the shape of the process on a small board (threads, database
//! page cache).
//!
//! Only the numbers live here; building the tokio runtime and opening redb belong to `main`,
//! `runtime` and `store`.

use serde::Deserialize;

use super::Problem;

/// Tokio runtime shape (`[runtime]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads; 1 runs everything on one thread (the small-board default).
    pub worker_threads: u16,
    /// Threads that run database transactions and file work (tokio's blocking pool; tokio's
    /// own default of 512 is far too many for a board). Work beyond them waits its turn.
    pub max_blocking_threads: u16,
}

impl Default for RuntimeConfig {
    fn default() -> RuntimeConfig {
        RuntimeConfig {
            worker_threads: 1,
            max_blocking_threads: 8,
        }
    }
}

/// Database tuning (`[storage]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// redb page cache in bytes (redb's own default is 1 GiB, far too much for a board).
    pub cache_bytes: u64,
}

impl Default for StorageConfig {
    fn default() -> StorageConfig {
        StorageConfig {
            cache_bytes: 4 * 1024 * 1024,
        }
    }
}

/// Checks `[runtime]` and `[storage]` against their bounds.
pub(super) fn check(runtime: RuntimeConfig, storage: StorageConfig, problems: &mut Vec<Problem>) {
    if runtime.worker_threads == 0 {
        problems.push(Problem::new("runtime.worker_threads", "must be at least 1"));
    }
    if !(1..=512).contains(&runtime.max_blocking_threads) {
        problems.push(Problem::new(
            "runtime.max_blocking_threads",
            "must be 1 to 512",
        ));
    }
    if storage.cache_bytes < 64 * 1024 {
        problems.push(Problem::new(
            "storage.cache_bytes",
            "must be at least 65536",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::*;

    #[test]
    fn defaults_suit_a_small_board() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(config.runtime, RuntimeConfig::default());
        assert_eq!(config.runtime.worker_threads, 1);
        assert_eq!(config.storage.cache_bytes, 4 * 1024 * 1024);
    }
}
