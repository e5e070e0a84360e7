//! What the `lhcluster` binary shares with the unpublished benchmark lab
//! (`bench/`, package `lhcluster-bench`): the load generator and report of
//! `lhcluster bench`, so that the lab measures with the same engine and
//! flags instead of a copy. Not a stable API: it changes with the binary.

pub mod bench;

use std::time::Duration;

/// Parses `5s`, `200ms`, `1m30s`… (humantime); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(text).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("200ms"), Ok(Duration::from_millis(200)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
    }
}
