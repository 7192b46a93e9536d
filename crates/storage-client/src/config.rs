//! How the storage client connects and retries.

use std::time::Duration;

/// How the client connects and retries.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// TCP connect timeout per replica.
    pub connect_timeout: Duration,
    /// Longest one attempt may take (a frozen replica costs at most this).
    pub attempt_timeout: Duration,
    /// First retry backoff; doubles per attempt up to `backoff_max`.
    pub backoff_base: Duration,
    /// Longest retry backoff.
    pub backoff_max: Duration,
    /// Stop retrying this long before the caller's deadline (at most a
    /// tenth of it), so that UNAVAILABLE reaches the caller in time.
    pub deadline_margin: Duration,
    /// A shard that answered nothing for this long fails calls at once
    /// (UNAVAILABLE naming it) instead of retrying to each deadline; zero:
    /// never (see `breaker`).
    pub breaker_open_after: Duration,
    /// While it fails fast, one call this often goes through to probe it.
    pub breaker_probe_every: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_millis(500),
            attempt_timeout: Duration::from_secs(1),
            backoff_base: Duration::from_millis(25),
            // Polls a shard that is electing a leader about every 100 ms.
            backoff_max: Duration::from_millis(200),
            deadline_margin: Duration::from_millis(250),
            // A few election timeouts (250-500 ms each): a normal election
            // ends well within it.
            breaker_open_after: Duration::from_millis(2500),
            breaker_probe_every: Duration::from_millis(250),
        }
    }
}
