//! `[runtime]`, `[storage]`, `[status]` and `[metrics]`: the shape of the process on a small
//! board (threads, database page cache) and where it can be observed.
//!
//! Only the numbers live here; building the tokio runtime and opening redb belong to `main`,
//! `runtime` and `store`.

use serde::Deserialize;

use super::{Bounds, Problem};

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

/// The observation socket (`[status]`) that `iop-profile-server status` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusConfig {
    /// Its path; by default `status.sock` in systemd's runtime directory for the service,
    /// else in `data_dir`.
    pub socket: Option<std::path::PathBuf>,
}

/// The Prometheus endpoint (`[metrics]`), as written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawMetrics {
    address: Option<String>,
}

/// The Prometheus endpoint (`[metrics]`), off unless `metrics.address` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served over HTTP; `None`: not served.
    pub address: Option<std::net::SocketAddr>,
}

/// Checks `metrics.address`: an IP address with a port.
pub(super) fn check_metrics(raw: &RawMetrics, problems: &mut Vec<Problem>) -> MetricsConfig {
    let address = raw.address.as_ref().and_then(|text| {
        let parsed = text.parse().ok();
        if parsed.is_none() {
            problems.push(Problem::new(
                "metrics.address",
                format!("'{text}' is not an IP address with a port (such as 127.0.0.1:9464)"),
            ));
        }
        parsed
    });
    MetricsConfig { address }
}

/// `runtime.worker_threads`: a Raspberry Pi has 4 cores; more threads than 64 only cost memory.
const WORKER_THREADS: Bounds = Bounds::new(1, 64);
/// `runtime.max_blocking_threads`: tokio's own default (512) is the ceiling.
const MAX_BLOCKING_THREADS: Bounds = Bounds::new(1, 512);
/// `storage.cache_bytes`: 64 KiB to redb's own default of 1 GiB.
const CACHE_BYTES: Bounds = Bounds::new(64 * 1024, 1 << 30);

/// Checks `[runtime]` and `[storage]` against their bounds.
pub(super) fn check(runtime: RuntimeConfig, storage: StorageConfig, problems: &mut Vec<Problem>) {
    let threads = u64::from(runtime.worker_threads);
    WORKER_THREADS.check("runtime.worker_threads", threads, problems);
    let blocking = u64::from(runtime.max_blocking_threads);
    MAX_BLOCKING_THREADS.check("runtime.max_blocking_threads", blocking, problems);
    CACHE_BYTES.check("storage.cache_bytes", storage.cache_bytes, problems);
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use super::super::tests::assert_bounds;
    use super::*;

    #[test]
    fn defaults_suit_a_small_board() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(config.runtime, RuntimeConfig::default());
        assert_eq!(config.runtime.worker_threads, 1);
        assert_eq!(config.storage.cache_bytes, 4 * 1024 * 1024);
    }

    #[test]
    fn metrics_are_off_unless_an_address_is_given() {
        let config = Config::parse("test_mode = true").expect("defaults are valid");
        assert_eq!(config.metrics.address, None);
        let on = Config::parse("[metrics]\naddress = \"127.0.0.1:9464\"").expect("valid");
        assert_eq!(on.metrics.address, "127.0.0.1:9464".parse().ok());
        let problems = Config::parse("[metrics]\naddress = \"localhost\"").expect_err("no port");
        assert_eq!(problems[0].key, "metrics.address");
    }

    #[test]
    fn every_key_is_bounded() {
        assert_bounds("runtime.worker_threads", WORKER_THREADS);
        assert_bounds("runtime.max_blocking_threads", MAX_BLOCKING_THREADS);
        assert_bounds("storage.cache_bytes", CACHE_BYTES);
    }
}
