//! Compiles the contracts in `proto/` with protox (no `protoc` needed) and
//! writes one descriptor set per package, so each service's reflection
//! lists only its own services.

use std::path::PathBuf;

const PACKAGES: [(&str, &str); 3] = [
    ("gateway", "anatomy/gateway/v1/ledger.proto"),
    ("business", "anatomy/business/v1/ledger.proto"),
    ("storage", "anatomy/storage/v1/storage.proto"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed={}", root.display());
    for (name, file) in PACKAGES {
        let fds = protox::compile([file], [&root])?;
        std::fs::write(
            out.join(format!("{name}_descriptor.bin")),
            prost::Message::encode_to_vec(&fds),
        )?;
        tonic_prost_build::configure()
            .bytes(".anatomy.storage.v1")
            .compile_fds(fds)?;
    }
    Ok(())
}
