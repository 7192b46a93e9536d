//! Per-tenant rate limits: a token bucket per tenant (GCRA, from the
//! `governor` crate), so one tenant's burst cannot starve the others.
//!
//! Where it sits: in the gateway, right after authentication (the tenant
//! must be known) and before any call goes to business — a refused call
//! costs the system nothing downstream. The refusal is
//! RESOURCE_EXHAUSTED with a `RetryInfo` detail saying when a token is
//! due, so well-behaved clients wait exactly that long.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt as _};

/// Token buckets keyed by tenant; clones share the buckets.
#[derive(Debug, Clone)]
pub struct TenantLimits {
    limiter: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    rps: u32,
}

impl TenantLimits {
    /// `rps` tokens per second per tenant, buckets of `burst` tokens
    /// (`rps` = 0: no limit).
    pub fn new(rps: u32, burst: u32) -> Self {
        let limiter = NonZeroU32::new(rps).map(|rate| {
            let burst = NonZeroU32::new(burst).unwrap_or(rate);
            Arc::new(RateLimiter::keyed(
                Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Self { limiter, rps }
    }

    /// Takes a token for `tenant`, or says when to come back.
    pub fn check(&self, tenant: &str) -> Result<(), Status> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        // `check_key` takes the key by reference but stores an owned copy
        // only for tenants it has not seen.
        match limiter.check_key(&tenant.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                metrics::counter!("gateway_rate_limited_total", "tenant" => tenant.to_owned())
                    .increment(1);
                Err(refusal(tenant, self.rps, wait))
            }
        }
    }
}

fn refusal(tenant: &str, rps: u32, wait: Duration) -> Status {
    let wait = wait.max(Duration::from_millis(1));
    Status::with_error_details(
        Code::ResourceExhausted,
        format!(
            "tenant {tenant:?} is over its rate limit of {rps} calls/s; retry in {} ms",
            wait.as_millis()
        ),
        ErrorDetails::with_retry_info(Some(wait)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_beyond_the_burst_per_tenant_with_a_retry_hint() {
        let limits = TenantLimits::new(1, 3);
        for _ in 0..3 {
            limits.check("acme").unwrap();
        }
        let refused = limits.check("acme").unwrap_err();
        assert_eq!(refused.code(), Code::ResourceExhausted);
        let hint = refused.get_details_retry_info().unwrap();
        let delay = hint.retry_delay.unwrap();
        assert!(
            delay > Duration::ZERO && delay <= Duration::from_secs(1),
            "{delay:?}"
        );
        // Another tenant has its own bucket.
        limits.check("globex").unwrap();
    }

    #[test]
    fn zero_means_no_limit() {
        let limits = TenantLimits::new(0, 0);
        for _ in 0..10_000 {
            limits.check("acme").unwrap();
        }
    }
}
