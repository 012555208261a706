//! Regenerates the seed corpora from real engines:
//! `cargo run --manifest-path fuzz/Cargo.toml --bin gen_corpus`.
//! Run it after every wire format change, then `cargo test --manifest-path
//! fuzz/Cargo.toml` and commit `fuzz/seeds/` and `fuzz/regressions/`.

fn main() -> std::io::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for (target, count) in syncplan_fuzz::corpus::generate(root)? {
        println!("{target}: {count} seeds");
    }
    Ok(())
}
