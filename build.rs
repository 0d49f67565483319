//! Generates the protobuf types from `proto/` with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/iop_shared.proto",
        "proto/iop_can.proto",
        "proto/iop_profile_server.proto",
        "proto/iop_loc_net.proto",
        "proto/store.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
