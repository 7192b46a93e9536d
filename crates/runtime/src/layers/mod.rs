//! Tower middleware, one concern per module. Each module says where its
//! layer belongs in a stack and why.
//!
//! A server's stack, outside in: `red` (count every call, as the caller
//! saw it) → `trace` (a span for everything below) → `authorize` (refuse
//! callers the matrix does not allow) → `shed` (refuse what exceeds
//! capacity) → `deadline` (refuse what is already too late) → `decode_error` (an
//! undecodable request is the caller's mistake) → the service. Clients: `propagate` outermost, and inside the gateway's
//! balancer a `breaker` per endpoint.

pub mod authorize;
pub mod breaker;
pub mod deadline;
pub mod decode_error;
pub mod propagate;
pub mod red;
pub mod refusal;
pub mod shed;
pub mod trace;
