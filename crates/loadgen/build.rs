//! Compiles the subset of etcd's v3 API the benchmark speaks (client only).
fn main() -> Result<(), anatomy_proto_build::BuildError> {
    anatomy_proto_build::compile(&anatomy_proto_build::Package {
        file: "etcd/etcdserverpb/kv.proto",
        json: None,
        bytes: &[".etcdserverpb"],
        servers: false,
    })
}
