//! Compiles `anatomy.business.v1`.
fn main() -> Result<(), anatomy_proto_build::BuildError> {
    anatomy_proto_build::compile(&anatomy_proto_build::Package {
        file: "anatomy/business/v1/ledger.proto",
        json: None,
        bytes: &[],
        servers: true,
    })
}
