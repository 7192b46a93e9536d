//! Compiles `anatomy.storage.v1` (values and keys as `bytes::Bytes`).
fn main() -> Result<(), anatomy_proto_build::BuildError> {
    anatomy_proto_build::compile(&anatomy_proto_build::Package {
        file: "anatomy/storage/v1/storage.proto",
        json: None,
        bytes: &[".anatomy.storage.v1"],
        servers: true,
    })
}
