//! Tower middleware, one concern per module. Each module says where its
//! layer belongs in a stack and why.

pub mod breaker;
pub mod propagate;
pub mod red;
pub mod trace;
