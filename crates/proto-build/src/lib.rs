//! What every contract crate's `build.rs` does, written once: compile one
//! package of `proto/` with protox (so no `protoc` is needed), write its
//! encoded descriptor set for server reflection, and generate the tonic
//! client and server code.
//!
//! Each package is its own crate (`gateway-api`, `business-api`,
//! `storage-api`), so a crate can only name the contracts it depends on:
//! "the gateway never talks to storage" is a compile error, not a habit.
#![forbid(unsafe_code)]

use std::path::PathBuf;

/// The error a build script reports.
pub type BuildError = Box<dyn std::error::Error>;

/// One contract package to compile.
#[derive(Debug, Clone)]
pub struct Package<'a> {
    /// The proto file under `proto/`, e.g. `anatomy/storage/v1/storage.proto`.
    pub file: &'a str,
    /// The descriptor set is written to `$OUT_DIR/descriptor.bin`.
    /// Also generate serde (proto3 JSON mapping, pbjson) for this package
    /// path, e.g. `.anatomy.gateway.v1`, with JSON-capable well-known types.
    pub json: Option<&'a str>,
    /// Proto paths whose `bytes` fields become `bytes::Bytes`.
    pub bytes: &'a [&'a str],
    /// Generate servers too (clients are always generated).
    pub servers: bool,
}

/// The repository's `proto/` directory, seen from a crate under `crates/`.
pub fn proto_root() -> Result<PathBuf, BuildError> {
    Ok(PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto"))
}

/// Compiles `package`; call it from `build.rs`.
pub fn compile(package: &Package<'_>) -> Result<(), BuildError> {
    let root = proto_root()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!(
        "cargo:rerun-if-changed={}",
        root.join(package.file).display()
    );
    let fds = protox::compile([package.file], [&root])?;
    let encoded = prost::Message::encode_to_vec(&fds);
    std::fs::write(out.join("descriptor.bin"), &encoded)?;
    let mut config = tonic_prost_build::configure().build_server(package.servers);
    for path in package.bytes {
        config = config.bytes(*path);
    }
    if package.json.is_some() {
        // Well-known types with JSON support, for an HTTP/JSON API.
        config = config
            .compile_well_known_types(true)
            .extern_path(".google.protobuf", "::pbjson_types");
    }
    config.compile_fds(fds)?;
    if let Some(path) = package.json {
        pbjson_build::Builder::new()
            .register_descriptors(&encoded)?
            .out_dir(&out)
            .emit_fields()
            .build(&[path])?;
    }
    Ok(())
}
