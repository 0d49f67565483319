//! Generates the protobuf types from `proto/` with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/iop_shared.proto",
        "proto/iop_can.proto",
        "proto/iop_profile_server.proto",
        "proto/iop_loc_net.proto",
        "proto/store.proto",
        "proto/ipns.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new()
        // LOC 1.x writes the service type as a varint, LOC 2.x as a string: these two messages
        // are written by hand to read both (src/wire/loc_service.rs).
        .extern_path(
            ".iop.locnet.ServiceInfo",
            "crate::wire::loc_service::ServiceInfo",
        )
        .extern_path(
            ".iop.locnet.DeregisterServiceRequest",
            "crate::wire::loc_service::DeregisterServiceRequest",
        )
        .compile_fds(descriptors)?;
    release_link_args();
    Ok(())
}

/// Release builds abort on panic, so nothing unwinds and the unwinder's lookup table
/// (`.eh_frame_hdr`, 4 % of the binary) only served backtraces, which a stripped binary cannot
/// name anyway. Debug and test builds keep it: tests unwind.
fn release_link_args() {
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let gnu_linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if release && gnu_linux {
        println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    }
}
