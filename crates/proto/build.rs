//! Compiles the contracts in `proto/` with protox (no `protoc` needed) and
//! writes one descriptor set per package, so each service's reflection
//! lists only its own services. The public package also gets serde
//! implementations of the proto3 JSON mapping (pbjson), for the gateway's
//! HTTP/JSON API.

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
        let encoded = prost::Message::encode_to_vec(&fds);
        std::fs::write(out.join(format!("{name}_descriptor.bin")), &encoded)?;
        let mut config = tonic_prost_build::configure().bytes(".anatomy.storage.v1");
        if name == "gateway" {
            // Well-known types with JSON support, for the HTTP API.
            config = config
                .compile_well_known_types(true)
                .extern_path(".google.protobuf", "::pbjson_types");
        }
        config.compile_fds(fds)?;
        if name == "gateway" {
            pbjson_build::Builder::new()
                .register_descriptors(&encoded)?
                .out_dir(&out)
                .emit_fields()
                .build(&[".anatomy.gateway.v1"])?;
        }
    }
    Ok(())
}
