//! Webhook signatures: HMAC-SHA256 over `<timestamp>.<body>`, sent as
//! `X-Geostream-Signature: sha256=<hex>` with the timestamp (Unix seconds) in
//! `X-Geostream-Timestamp`.
//!
//! The timestamp is inside the signed string so a captured request cannot be replayed later with
//! a fresh timestamp; receivers refuse timestamps outside a tolerance. Each attempt is signed
//! anew, so a retry hours later still passes a tight tolerance.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header with `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-geostream-signature";
/// Header with the Unix time (seconds) the request was signed at.
pub const TIMESTAMP_HEADER: &str = "x-geostream-timestamp";
/// Header with the event id, for receivers to drop redeliveries.
pub const EVENT_ID_HEADER: &str = "x-geostream-event-id";
/// Header with the output's name.
pub const OUTPUT_HEADER: &str = "x-geostream-output";

type HmacSha256 = Hmac<Sha256>;

/// An HMAC key, prepared once per output.
#[derive(Clone)]
pub struct SigningKey(HmacSha256);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

impl SigningKey {
    /// Prepares `key`; HMAC accepts any length, the error exists only in the `hmac` API.
    pub fn new(key: &[u8]) -> Result<Self, VerifyError> {
        HmacSha256::new_from_slice(key).map(Self).map_err(|_| VerifyError::BadKey)
    }

    fn mac(&self, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut m = self.0.clone();
        m.update(timestamp.to_string().as_bytes());
        m.update(b".");
        m.update(body);
        m
    }
}

/// The value of [`SIGNATURE_HEADER`] for `body` signed at `timestamp`.
pub fn sign(key: &SigningKey, timestamp: i64, body: &[u8]) -> String {
    format!("sha256={}", hex::encode(key.mac(timestamp, body).finalize().into_bytes()))
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp header is not an integer.
    #[error("timestamp {0:?} is not Unix seconds")]
    BadTimestamp(String),
    /// The timestamp lies outside the tolerance (a replay or a badly skewed clock).
    #[error("timestamp is {0} s away from now, beyond the tolerance")]
    Stale(i64),
    /// The header is not `sha256=<hex>`.
    #[error("signature header is not sha256=<hex>")]
    BadFormat,
    /// The signature does not match the body and key.
    #[error("signature does not match")]
    Mismatch,
    /// The key cannot be used for HMAC.
    #[error("the key cannot be used for HMAC-SHA256")]
    BadKey,
}

/// Checks a request the way a receiver should: timestamp within `tolerance_s` of `now`, then the
/// MAC compared in constant time.
pub fn verify(
    key: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: i64,
    tolerance_s: i64,
) -> Result<(), VerifyError> {
    let ts: i64 = timestamp_header.trim().parse().map_err(|_| VerifyError::BadTimestamp(timestamp_header.into()))?;
    let skew = now.saturating_sub(ts);
    if skew.abs() > tolerance_s {
        return Err(VerifyError::Stale(skew));
    }
    let hex_sig = signature_header.trim().strip_prefix("sha256=").ok_or(VerifyError::BadFormat)?;
    let sig = hex::decode(hex_sig).map_err(|_| VerifyError::BadFormat)?;
    SigningKey::new(key)?.mac(ts, body).verify_slice(&sig).map_err(|_| VerifyError::Mismatch)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn matches_an_independent_hmac() {
        // `printf '%s' '1714564800.{"a":1}' | openssl dgst -sha256 -hmac 'Jefe'`
        assert_eq!(
            sign(&SigningKey::new(b"Jefe").unwrap(), 1_714_564_800, br#"{"a":1}"#),
            "sha256=08d1419027c66fc66a1d78e101493ed7f85432f8ef3f20cbe1db3d98f9a8a2e8"
        );
    }

    #[test]
    fn verify_accepts_its_own_and_refuses_tampering_replays_and_garbage() {
        let key = b"shared key";
        let body = br#"{"type":"Feature"}"#;
        let sig = sign(&SigningKey::new(key).unwrap(), 1000, body);
        assert_eq!(format!("{:?}", SigningKey::new(key).unwrap()), "SigningKey(<redacted>)");
        assert_eq!(verify(key, "1000", &sig, body, 1010, 300), Ok(()));
        assert_eq!(verify(key, "1000", &sig, b"{}", 1010, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(b"other", "1000", &sig, body, 1010, 300), Err(VerifyError::Mismatch));
        // A replay with a new timestamp fails because the timestamp is signed.
        assert_eq!(verify(key, "1500", &sig, body, 1500, 300), Err(VerifyError::Mismatch));
        assert_eq!(verify(key, "1000", &sig, body, 2000, 300), Err(VerifyError::Stale(1000)));
        assert_eq!(verify(key, "x", &sig, body, 1000, 300), Err(VerifyError::BadTimestamp("x".into())));
        assert_eq!(verify(key, "1000", "md5=00", body, 1000, 300), Err(VerifyError::BadFormat));
        assert_eq!(verify(key, "1000", "sha256=zz", body, 1000, 300), Err(VerifyError::BadFormat));
    }
}
