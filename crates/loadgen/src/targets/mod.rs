//! What the load generator can drive.

pub mod bank;
pub mod etcd;
pub mod ledger;
pub mod storage;

/// A short failure kind for a gRPC status. tonic reports its own client-side
/// deadline as `Cancelled` ("Timeout expired"); that is a `DeadlineExceeded`.
pub fn kind(status: &tonic::Status) -> String {
    if status.code() == tonic::Code::Cancelled
        && status.message() == tonic::TimeoutExpired(()).to_string()
    {
        return format!("{:?}", tonic::Code::DeadlineExceeded);
    }
    format!("{:?}", status.code())
}

/// A value of `size` bytes that differs per operation.
pub fn value(size: usize, n: u64) -> Vec<u8> {
    let mut v = vec![b'x'; size];
    let tag = n.to_le_bytes();
    let k = tag.len().min(size);
    v[..k].copy_from_slice(&tag[..k]);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_deadlines_are_deadline_exceeded() {
        let timeout = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(kind(&timeout), "DeadlineExceeded");
        assert_eq!(
            kind(&tonic::Status::cancelled("by the server")),
            "Cancelled"
        );
        assert_eq!(kind(&tonic::Status::unavailable("down")), "Unavailable");
    }
}
