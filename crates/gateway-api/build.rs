//! Compiles `anatomy.gateway.v1`, with the proto3 JSON mapping for the
//! gateway's HTTP/JSON API.
fn main() -> Result<(), anatomy_proto_build::BuildError> {
    anatomy_proto_build::compile(&anatomy_proto_build::Package {
        file: "anatomy/gateway/v1/ledger.proto",
        json: Some(".anatomy.gateway.v1"),
        bytes: &[],
        servers: true,
    })
}
