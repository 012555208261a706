//! Compiles `syncplan/v1/*.proto` with protox (a Rust protobuf compiler), so no
//! `protoc` binary is needed, and hands the descriptors to prost-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["syncplan/v1/sync.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["."])?;
    prost_build::Config::new()
        // Deterministic bytes: any map would be a BTreeMap, never a HashMap.
        .btree_map(["."])
        .compile_fds(descriptors)?;
    Ok(())
}
