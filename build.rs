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

    // The google.rpc error model, vendored in proto/google/rpc: the contract imports its
    // Status, and reflection serves these files (a test compares their messages with the
    // types tonic-types encodes the details with).
    let google_rpc = protox::compile(GOOGLE_RPC, ["proto"])?;
    fs::write(
        out_dir.join("google_rpc_descriptor.bin"),
        google_rpc.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        // google.rpc.Status in batch results: tonic-types' generated type.
        .extern_path(".google.rpc", "::tonic_types::pb")
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
