//! Compiles `roaming/**/*.proto` with protox (no system protoc) into prost messages and tonic
//! clients and servers, and writes the descriptor set to `OUT_DIR` for server reflection.

use prost::Message as _;

const PROTOS: &[&str] = &[
    "roaming/common/v1/common.proto",
    "roaming/history/v1/history.proto",
    "roaming/conversation/v1/conversation.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=roaming");
    let fds = protox::compile(PROTOS, ["."])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("roaming_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
