//! Flags every service takes. Every flag `--foo-bar` has the env twin
//! `ANATOMY_FOO_BAR`, and `--help` lists both.

use std::time::Duration;

use clap::{Args, ValueEnum};

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags shared by every service.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Log line format (the level comes from RUST_LOG, default "info").
    #[arg(long, env = "ANATOMY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// How long a SIGTERM/SIGINT waits for in-flight calls to finish before
    /// the process exits anyway.
    #[arg(long, env = "ANATOMY_SHUTDOWN_GRACE", value_parser = parse_duration, default_value = "10s")]
    pub shutdown_grace: Duration,

    /// Calls this server works on at once; beyond that it answers
    /// RESOURCE_EXHAUSTED at once instead of queueing (0 = no bound).
    #[arg(long, env = "ANATOMY_MAX_CONCURRENT_CALLS", default_value_t = 1024)]
    pub max_concurrent_calls: usize,

    /// The largest request message accepted, in bytes; larger ones are
    /// refused before they are decoded (OUT_OF_RANGE, as tonic reports it).
    #[arg(long, env = "ANATOMY_MAX_REQUEST_BYTES", default_value_t = 1 << 20)]
    pub max_request_bytes: usize,

    /// The longest deadline a call may ask for: a longer grpc-timeout is
    /// cut to this (and passed on so to the next hop), so that no caller
    /// holds a slot longer, however long it is willing to wait.
    #[arg(long, env = "ANATOMY_MAX_DEADLINE", value_parser = parse_duration, default_value = "30s")]
    pub max_deadline: Duration,

    /// Async worker threads (0 = one per CPU core).
    #[arg(long, env = "ANATOMY_WORKER_THREADS", default_value_t = 0)]
    pub worker_threads: usize,
}

impl CommonArgs {
    /// The server limits these flags describe, with `default_deadline`
    /// for calls that bring none.
    pub fn limits(&self, default_deadline: Duration) -> crate::server::ServerLimits {
        crate::server::ServerLimits {
            max_in_flight: self.max_concurrent_calls,
            default_deadline,
            max_deadline: self.max_deadline,
            max_request_bytes: self.max_request_bytes,
            connection_age: crate::server::ConnectionAge::Unlimited,
        }
    }

    /// Builds the tokio runtime these flags ask for and runs `main` on it.
    pub fn block_on<F: std::future::Future>(&self, main: F) -> std::io::Result<F::Output> {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        if self.worker_threads > 0 {
            builder.worker_threads(self.worker_threads);
        }
        Ok(builder.enable_all().build()?.block_on(main))
    }
}

/// Parses durations written as `250ms`, `10s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 250ms, 10s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
    }
}
