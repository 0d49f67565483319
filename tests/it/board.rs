//! The shipped board profiles (`board/*/config.toml` and their systemd drop-ins): each passes
//! `check-config`, keeps its limits inside the board's memory budget, and the package installs
//! the right files.

use std::path::{Path, PathBuf};

use iop_profile_server::config::Config;

use crate::kit::server_command;

/// Smallest board first.
const BOARDS: [&str; 3] = ["pi-zero-2w", "pi3", "pi4"];

/// Code, runtime and everything not scaled by a limit, as the profiles' comments say.
const BASE_BYTES: u64 = 16 << 20;
/// TLS buffers and queued answers of one open connection, as the profiles' comments say.
const PER_CONNECTION_BYTES: u64 = 64 << 10;

fn board_dir(board: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("board")
        .join(board)
}

fn load(board: &str) -> Config {
    let path = board_dir(board).join("config.toml");
    Config::load(&path).unwrap_or_else(|problems| panic!("{}: {problems:?}", path.display()))
}

/// `MemoryMax=` of a drop-in, in bytes (only the `M` suffix is used there).
fn memory_max(board: &str) -> u64 {
    let path = board_dir(board).join("override.conf");
    let text = std::fs::read_to_string(&path).expect("read override.conf");
    let value = text
        .lines()
        .find_map(|line| line.strip_prefix("MemoryMax="))
        .unwrap_or_else(|| panic!("{}: no MemoryMax", path.display()));
    let mib: u64 = value
        .strip_suffix('M')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}: MemoryMax={value} is not in M", path.display()));
    mib << 20
}

#[test]
fn check_config_accepts_every_board_profile() {
    for board in BOARDS {
        let path = board_dir(board).join("config.toml");
        let out = server_command()
            .arg("check-config")
            .arg("--config")
            .arg(&path)
            .output()
            .expect("binary runs");
        assert!(
            out.status.success(),
            "{board}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn board_profiles_are_production_settings() {
    for board in BOARDS {
        let config = load(board);
        assert_eq!(
            config.data_dir,
            Path::new("/var/lib/iop-profile-server"),
            "{board}"
        );
        assert!(!config.test_mode, "{board}");
        let ports: Vec<u16> = config.listeners.iter().map(|l| l.port).collect();
        assert_eq!(ports, [16987, 16988], "{board}");
    }
}

#[test]
fn board_limits_fit_the_memory_budget_and_grow_with_the_board() {
    let mut previous: Option<Config> = None;
    for board in BOARDS {
        let config = load(board);
        let worst_case = BASE_BYTES
            + u64::from(config.limits.max_connections) * PER_CONNECTION_BYTES
            + u64::from(config.limits.max_inflight_bytes)
            + config.storage.cache_bytes;
        let budget = memory_max(board);
        // Half the budget stays free for the page cache of the database and image files.
        assert!(
            worst_case <= budget / 2,
            "{board}: worst case {} MiB does not fit MemoryMax {} MiB",
            worst_case >> 20,
            budget >> 20
        );
        if let Some(smaller) = previous {
            let (a, b) = (&smaller.limits, &config.limits);
            assert!(a.max_connections <= b.max_connections, "{board}");
            assert!(a.max_inflight_bytes <= b.max_inflight_bytes, "{board}");
            assert!(
                a.max_hosted_identities <= b.max_hosted_identities,
                "{board}"
            );
            assert!(
                smaller.storage.cache_bytes <= config.storage.cache_bytes,
                "{board}"
            );
        }
        previous = Some(config);
    }
}

/// The `.deb` layout lives in Cargo.toml (`[package.metadata.deb]`); check it without cargo-deb.
#[test]
fn package_installs_binary_unit_default_config_and_board_profiles() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).expect("read Cargo.toml");
    let cargo: toml::Table = toml::from_str(&text).expect("Cargo.toml parses");
    let deb = &cargo["package"]["metadata"]["deb"];
    let assets: Vec<(String, String)> = deb["assets"]
        .as_array()
        .expect("assets")
        .iter()
        .map(|asset| {
            let pair = asset.as_array().expect("asset is [source, target, mode]");
            let text = |i: usize| pair[i].as_str().expect("string").to_owned();
            (text(0), text(1))
        })
        .collect();
    let installs = |source: &str, target: &str| {
        assets
            .iter()
            .any(|(s, t)| s.ends_with(source) && t == target)
    };
    assert!(
        installs("release/iop-profile-server", "usr/bin/"),
        "{assets:?}"
    );
    assert!(
        installs(
            "board/pi3/config.toml",
            "etc/iop-profile-server/config.toml"
        ),
        "{assets:?}"
    );
    let unit_shipped = deb["systemd-units"]["unit-name"].as_str() == Some("iop-profile-server")
        && deb["maintainer-scripts"].as_str() == Some("debian/");
    assert!(unit_shipped, "{deb:?}");
    for board in BOARDS {
        for file in ["config.toml", "override.conf"] {
            let target = format!("usr/share/iop-profile-server/board/{board}/{file}");
            assert!(
                installs(&format!("board/{board}/{file}"), &target),
                "{target}"
            );
        }
    }
}
