//! The Rust code for `proto/lhcluster.proto` is generated once and committed
//! (`src/protocol/pb.rs`), so building the crate needs neither `protoc` nor
//! the `proto/` folder outside the crate. This test regenerates it with
//! `protox` (a pure-Rust protobuf compiler) and `prost-build`, and fails when
//! the committed file is stale. Run with `LHCLUSTER_BLESS=1` to rewrite it.

use std::path::PathBuf;

#[test]
fn committed_protocol_code_matches_proto_schema() {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let proto_dir = crate_dir.join("../proto");
    let proto_file = proto_dir.join("lhcluster.proto");
    if !proto_file.exists() {
        // Running from a packaged crate (no workspace around it): nothing to compare.
        eprintln!("skipping: {} not found", proto_file.display());
        return;
    }
    let descriptors =
        protox::compile([&proto_file], [&proto_dir]).expect("proto/lhcluster.proto compiles");
    let out_dir = tempdir();
    prost_build::Config::new()
        .out_dir(&out_dir)
        .compile_fds(descriptors)
        .expect("prost-build generates code");
    let generated = std::fs::read_to_string(out_dir.join("lhcluster.v1.rs")).unwrap();
    let generated = format!("{HEADER}{generated}");
    let committed_path = crate_dir.join("src/protocol/pb.rs");
    if std::env::var_os("LHCLUSTER_BLESS").is_some() {
        std::fs::write(&committed_path, &generated).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "src/protocol/pb.rs is stale: run `LHCLUSTER_BLESS=1 cargo test -p lhcluster --test generated_protocol`"
    );
}

const HEADER: &str =
    "// @generated from proto/lhcluster.proto by tests/generated_protocol.rs; do not edit.\n";

fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lhcluster-pb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
