//! Bearer tokens: read tokens per tenant and one admin token for registry writes.
//!
//! Tokens of every tenant may be configured on every tenant's API (one shared secret file), so a
//! token that is valid but belongs to another tenant is recognised and refused with 403 rather
//! than looking like an unknown token (401): the caller learns the token is fine and the tenant
//! is wrong. Comparison is constant-time per token so response timing does not leak prefixes.

use std::collections::BTreeMap;

use crate::problem::ApiError;

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading the tenant's data.
    Read,
    /// Changing the tenant's registry.
    Admin,
}

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Tokens {
    /// Token → the tenant it reads.
    read: Vec<(String, String)>,
    admin: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Tokens").field("read", &self.read.len()).field("admin", &self.admin.is_some()).finish()
    }
}

/// A tokens file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tokens line {line}: {problem}")]
pub struct TokensFileError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub problem: String,
}

impl Tokens {
    /// Tokens from `tenant → [token, ...]` and an optional admin token. Empty tokens are ignored.
    pub fn new(by_tenant: &BTreeMap<String, Vec<String>>, admin: Option<String>) -> Self {
        let read = by_tenant
            .iter()
            .flat_map(|(tenant, tokens)| tokens.iter().filter(|t| !t.is_empty()).map(|t| (t.clone(), tenant.clone())))
            .collect();
        Tokens { read, admin: admin.filter(|a| !a.is_empty()) }
    }

    /// Parses a tokens file: one `<tenant> <token>` pair per line; blank lines and `#` comments
    /// are skipped.
    pub fn parse_file(text: &str) -> Result<BTreeMap<String, Vec<String>>, TokensFileError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split_whitespace();
            match (parts.next(), parts.next(), parts.next()) {
                (Some(tenant), Some(token), None) => out.entry(tenant.to_owned()).or_default().push(token.to_owned()),
                _ => {
                    return Err(TokensFileError {
                        line: i + 1,
                        problem: "expected `<tenant> <token>` (two fields separated by spaces)".into(),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Whether a registry write is possible at all.
    pub fn has_admin(&self) -> bool {
        self.admin.is_some()
    }

    /// Decides a request for `tenant` carrying the `Authorization` header value `header`.
    pub fn check(&self, header: Option<&str>, tenant: &str, access: Access) -> Result<(), ApiError> {
        let Some(header) = header else {
            return Err(ApiError::Unauthenticated(
                "no Authorization header; send `Authorization: Bearer <token>` with a token of this tenant".into(),
            ));
        };
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
            _ => {
                return Err(ApiError::Unauthenticated("the Authorization header is not `Bearer <token>`".into()));
            }
        };
        let is_admin = self.admin.as_deref().is_some_and(|a| same(a, token));
        if is_admin {
            return Ok(());
        }
        let mut owner = None;
        for (t, ten) in &self.read {
            if same(t, token) {
                owner = Some(ten.as_str());
            }
        }
        match (owner, access) {
            (None, _) => Err(ApiError::Unauthenticated("the bearer token is not known".into())),
            (Some(o), _) if o != tenant => {
                Err(ApiError::Forbidden(format!("the token belongs to another tenant, not to {tenant:?}")))
            }
            (Some(_), Access::Read) => Ok(()),
            (Some(_), Access::Admin) => {
                Err(ApiError::Forbidden("registry changes need the admin token; this is a read token".into()))
            }
        }
    }
}

/// Constant-time equality (for equal lengths; a length difference is not secret).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::StatusCode;

    fn tokens() -> Tokens {
        let map = BTreeMap::from([
            ("acme".to_owned(), vec!["r-acme".to_owned(), "r-acme-2".to_owned()]),
            ("other".to_owned(), vec!["r-other".to_owned(), String::new()]),
        ]);
        Tokens::new(&map, Some("adm".into()))
    }

    fn status(r: Result<(), ApiError>) -> u16 {
        match r {
            Ok(()) => 200,
            Err(e) => e.status().as_u16(),
        }
    }

    #[test]
    fn decisions() {
        let t = tokens();
        let cases: &[(Option<&str>, Access, u16)] = &[
            (None, Access::Read, 401),
            (Some("Bearer"), Access::Read, 401),
            (Some("Bearer "), Access::Read, 401),
            (Some("Basic r-acme"), Access::Read, 401),
            (Some("Bearer nope"), Access::Read, 401),
            (Some("Bearer r-acm"), Access::Read, 401),
            (Some("Bearer r-acme"), Access::Read, 200),
            (Some("bearer r-acme-2"), Access::Read, 200),
            (Some("Bearer r-other"), Access::Read, 403),
            (Some("Bearer r-acme"), Access::Admin, 403),
            (Some("Bearer adm"), Access::Admin, 200),
            (Some("Bearer adm"), Access::Read, 200),
        ];
        for (h, access, want) in cases {
            assert_eq!(status(t.check(*h, "acme", *access)), *want, "{h:?} {access:?}");
        }
        assert_eq!(StatusCode::FORBIDDEN.as_u16(), status(t.check(Some("Bearer r-other"), "acme", Access::Read)));
        // The empty token configured for `other` never matches anything.
        assert_eq!(status(t.check(Some("Bearer  "), "other", Access::Read)), 401);
        let no_admin = Tokens::new(&BTreeMap::new(), Some(String::new()));
        assert!(!no_admin.has_admin());
        assert_eq!(status(no_admin.check(Some("Bearer x"), "acme", Access::Admin)), 401);
    }

    #[test]
    fn debug_output_hides_tokens() {
        let shown = format!("{:?}", tokens());
        assert!(!shown.contains("r-acme") && !shown.contains("adm\""), "{shown}");
    }

    #[test]
    fn tokens_files() {
        let m = Tokens::parse_file("# comment\n\nacme  t1\nacme t2\nother t3\n").unwrap();
        assert_eq!(m["acme"], ["t1", "t2"]);
        assert_eq!(m["other"], ["t3"]);
        assert_eq!(Tokens::parse_file("acme\n").unwrap_err().line, 1);
        assert_eq!(Tokens::parse_file("a b\nacme t1 extra\n").unwrap_err().line, 2);
    }
}
