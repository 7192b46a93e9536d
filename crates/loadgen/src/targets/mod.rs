//! What the load generator can drive.

pub mod bank;
pub mod etcd;
pub mod ledger;
pub mod register;
pub mod storage;

/// How many failures a run describes in full on stderr (code, message and
/// local cause): enough to tell why a run failed, bounded under a flood.
const DESCRIBED_FAILURES: usize = 10;

/// The kind of a call's final failure (see `kind`); the first
/// `DESCRIBED_FAILURES` of a process are also written out in full, since
/// a kind alone rarely says which hop failed.
pub fn failure(status: &tonic::Status) -> String {
    static DESCRIBED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if DESCRIBED.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < DESCRIBED_FAILURES {
        let cause = std::error::Error::source(status).map(|e| format!(" (local cause: {e})"));
        eprintln!(
            "failed: {:?}: {}{}",
            status.code(),
            status.message(),
            cause.unwrap_or_default()
        );
    }
    kind(status)
}

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
