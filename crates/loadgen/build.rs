//! Compiles the subset of etcd's v3 API the benchmark speaks (client only).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.join("etcd").display());
    let fds = protox::compile(["etcd/etcdserverpb/kv.proto"], [&root])?;
    tonic_prost_build::configure()
        .build_server(false)
        .bytes(".etcdserverpb")
        .compile_fds(fds)?;
    Ok(())
}
