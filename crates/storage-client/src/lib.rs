pub mod shard_map;
pub mod wire_errors;
