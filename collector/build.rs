//! Generates the gRPC service of `core/proto/submission.proto` with tonic. The messages are
//! core's own prost types (`extern_path`), so a submission has one Rust type everywhere. protoc
//! comes from the `protoc-bin-vendored` crate: nothing to install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../core/proto/submission.proto";
    println!("cargo:rerun-if-changed={proto}");
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // The generator reads PROTOC from the environment.
    std::env::set_var("PROTOC", protoc);
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .extern_path(
            ".submission.Request",
            "::sequencer_core::submission::proto::Request",
        )
        .extern_path(
            ".submission.SnapshotSubmission",
            "::sequencer_core::submission::proto::SnapshotSubmission",
        )
        .compile_protos(&[proto], &["../core/proto"])?;
    Ok(())
}
