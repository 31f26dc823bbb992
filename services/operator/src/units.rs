//! Kubernetes quantities (`10Gi`, `500M`) and durations (`90s`, `5m`, `6h`, `7d`) as numbers. Pure.

/// A quantity in bytes. Binary (Ki, Mi, Gi, Ti, Pi) and decimal (k, M, G, T, P) suffixes, or none.
pub fn parse_quantity(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, suffix) = t.split_at(split);
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        other => return Err(format!("{s:?}: unknown quantity suffix {other:?} (use Ki, Mi, Gi, Ti or k, M, G, T)")),
    };
    let value: f64 = num.parse().map_err(|_| format!("{s:?} is not a quantity like 10Gi"))?;
    if !value.is_finite() || value < 0.0 {
        return Err(format!("{s:?} is not a non-negative quantity"));
    }
    Ok((value * mult as f64).round() as u64)
}

/// Bytes as a quantity: exact `Gi` or `Mi` when it divides, else plain bytes.
pub fn format_quantity(bytes: u64) -> String {
    if bytes > 0 && bytes.is_multiple_of(1 << 30) {
        format!("{}Gi", bytes >> 30)
    } else if bytes > 0 && bytes.is_multiple_of(1 << 20) {
        format!("{}Mi", bytes >> 20)
    } else {
        bytes.to_string()
    }
}

/// A duration in seconds: `<n>s|m|h|d`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let (num, mult) = match t.chars().last() {
        Some('s') => (&t[..t.len() - 1], 1),
        Some('m') => (&t[..t.len() - 1], 60),
        Some('h') => (&t[..t.len() - 1], 3_600),
        Some('d') => (&t[..t.len() - 1], 86_400),
        _ => (t, 1),
    };
    let n: i64 = num.parse().map_err(|_| format!("{s:?} is not a duration like 90s, 5m, 6h or 7d"))?;
    if n < 0 {
        return Err(format!("{s:?} is negative"));
    }
    n.checked_mul(mult).ok_or_else(|| format!("{s:?} is too long"))
}

/// Unix seconds as RFC 3339 (UTC).
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// RFC 3339 as unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok().map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("10Gi").unwrap(), 10 << 30);
        assert_eq!(parse_quantity("1.5Gi").unwrap(), 3 << 29);
        assert_eq!(parse_quantity("500M").unwrap(), 500_000_000);
        assert_eq!(parse_quantity("1024").unwrap(), 1024);
        assert!(parse_quantity("10GB").is_err());
        assert!(parse_quantity("-1Gi").is_err());
        assert!(parse_quantity("Gi").is_err());
        assert_eq!(format_quantity(12 << 30), "12Gi");
        assert_eq!(format_quantity(1536 << 20), "1536Mi");
        assert_eq!(format_quantity(1000), "1000");
        for q in ["1Gi", "1536Mi", "12345"] {
            assert_eq!(format_quantity(parse_quantity(q).unwrap()), q);
        }
    }

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("6h").unwrap(), 21_600);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("42").unwrap(), 42);
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("-5m").is_err());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339(&rfc3339(1_700_000_000)), Some(1_700_000_000));
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
