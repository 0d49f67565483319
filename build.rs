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
        // Signed profiles keep the bytes their owner signed (src/wire/signed_profile.rs).
        .extern_path(
            ".iop.profileserver.SignedProfileInformation",
            "crate::wire::signed_profile::SignedProfileInformation",
        )
        .compile_fds(descriptors)?;
    release_link_args()?;
    Ok(())
}

/// Release builds abort on panic, so nothing ever unwinds: the unwinder's tables (`.eh_frame`,
/// 13 % of the aarch64 binary, and its index `.eh_frame_hdr`) would only serve backtraces,
/// which a stripped binary cannot name anyway. Release binaries are linked without them: a
/// linker script that GNU ld inserts into its default one discards the sections. Debug and test
/// builds keep them: tests unwind. Static musl builds keep `.eh_frame` too, because their C
/// start files register it with the unwinder at start-up.
fn release_link_args() -> std::io::Result<()> {
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if !(release && linux) {
        return Ok(());
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--no-eh-frame-hdr");
    if std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu") {
        let out_dir =
            std::env::var_os("OUT_DIR").ok_or_else(|| std::io::Error::other("no OUT_DIR"))?;
        let script = std::path::Path::new(&out_dir).join("discard-unwind-tables.ld");
        std::fs::write(
            &script,
            "SECTIONS\n{\n  /DISCARD/ : { *(.eh_frame) *(.eh_frame.*) }\n}\nINSERT AFTER .rodata;\n",
        )?;
        println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    }
    Ok(())
}
