//! Compiles the gRPC contract in `proto/` with protox (pure Rust: no `protoc` needed) and
//! generates the tonic server and client code from it.

use std::{env, fs, path::PathBuf};

use prost::Message;

const PROTOS: &[&str] = &["usermgmt/v1/usermgmt.proto"];
const GOOGLE_RPC: &[&str] = &["google/rpc/status.proto", "google/rpc/error_details.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(PROTOS, ["proto"])?;

    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(
        out_dir.join("usermgmt_descriptor.bin"),
        descriptors.encode_to_vec(),
    )?;

    // The google.rpc error model, vendored for clients in proto/google/rpc. Compiled here so
    // that a copy that no longer parses fails the build; a test compares it with the
    // descriptors the service serves (tonic-types').
    let google_rpc = protox::compile(GOOGLE_RPC, ["proto"])?;
    fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        google_rpc.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
