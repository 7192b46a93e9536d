//! Deadlines as gRPC carries them (read here; enforced by
//! `layers::deadline`): the `grpc-timeout` request header
//! (`<digits><unit>`, unit one of H M S m u n). A server reads the budget its
//! caller left, so that it can give up — and pass the rest on — in time.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// Parses a `grpc-timeout` value such as `100m` or `5S`.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// The time the caller allowed, or `default` when it sent no deadline.
pub fn budget(metadata: &MetadataMap, default: Duration) -> Duration {
    metadata
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .and_then(parse_grpc_timeout)
        .unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(
            parse_grpc_timeout("100000u"),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(parse_grpc_timeout("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(parse_grpc_timeout("5"), None);
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("1234567890S"), None, "at most 8 digits");
    }

    #[test]
    fn falls_back_to_the_default() {
        let mut md = MetadataMap::new();
        assert_eq!(budget(&md, Duration::from_secs(3)), Duration::from_secs(3));
        md.insert("grpc-timeout", "250m".parse().expect("ascii"));
        assert_eq!(
            budget(&md, Duration::from_secs(3)),
            Duration::from_millis(250)
        );
    }
}
