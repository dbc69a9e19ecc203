//! Pre-launch checks (P1–P4, J3, J10): what is checked before submitting,
//! for which submissions, and the pure readers behind the verdicts (an HTTP
//! answer, a credential's end of validity). Running them is the worker's.
//!
//! A credential's text is never part of a verdict or an error: only its
//! kind, its file and how long it has left.

use std::path::PathBuf;
use std::time::Duration;

/// One configured check.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    /// Its unique name (shown in holds and in `prodops check`).
    pub name: String,
    /// The submissions it guards.
    pub scope: Scope,
    /// Longest time one run may take (a timeout fails the check).
    pub timeout: Duration,
    /// How long a verdict holds before the check is run again (0 = before every submission).
    pub every: Duration,
    /// What is checked.
    pub probe: Probe,
}

/// The submissions a check guards; `None` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Only this experiment's submissions.
    pub experiment: Option<String>,
    /// Only submissions to this backend.
    pub backend: Option<String>,
}

impl Scope {
    /// True when a submission of `experiment` to `backend` must wait for this check.
    pub fn covers(&self, experiment: &str, backend: &str) -> bool {
        self.experiment.as_deref().is_none_or(|e| e == experiment)
            && self.backend.as_deref().is_none_or(|b| b == backend)
    }

    /// `experiment mu2e, backend slurm`, or `all submissions`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [("experiment", &self.experiment), ("backend", &self.backend)]
            .iter()
            .filter_map(|(what, v)| v.as_ref().map(|v| format!("{what} {v}")))
            .collect();
        if parts.is_empty() {
            "all submissions".into()
        } else {
            parts.join(", ")
        }
    }
}

/// What a check looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A service answers (P1): the status, and optionally a JSON field's value.
    Http {
        /// The URL to GET.
        url: String,
        /// The status that means healthy.
        status: u16,
        /// A top-level (or dotted) field of the JSON body to compare.
        json_field: Option<String>,
        /// Its healthy value, as text.
        json_equals: Option<String>,
    },
    /// A command exits 0 (P1, P2).
    Command {
        /// The argument vector.
        argv: Vec<String>,
    },
    /// A batch system's queue is shorter than a limit (P3, J10).
    QueueDepth {
        /// The backend whose queue is counted.
        backend: String,
        /// Most jobs queued or running allowed.
        max: u64,
        /// Whose jobs are counted.
        of: QueueOf,
    },
    /// Software is present (P2): a path (e.g. a CVMFS release dir) or a program on `PATH`.
    Software {
        /// A file or directory that must exist.
        path: Option<PathBuf>,
        /// A program that must be found on `PATH`.
        program: Option<String>,
    },
    /// A credential is valid for at least `min_hours` more (J3).
    Credential {
        /// Which kind.
        kind: CredentialKind,
        /// Its file (`X509_USER_PROXY`, `BEARER_TOKEN_FILE`).
        file: PathBuf,
        /// Hours it must still be valid.
        min_hours: f64,
    },
}

/// Whose queued and running jobs a queue check counts (P3): an
/// experiment's (and role's) own, as each batch system accounts them, not
/// the whole system's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOf {
    /// The experiment (the check's scope), when the check has one.
    pub experiment: Option<String>,
    /// The accounting name, when not derived from the experiment: HTCondor's
    /// `AccountingGroup` (default `group_<experiment>`), Slurm's account
    /// (default the experiment), jobsub's group (default the backend's).
    pub group: Option<String>,
    /// The role: HTCondor's accounting subgroup (`group_nova.<role>`),
    /// Slurm's QOS, jobsub's role (default the backend's).
    pub role: Option<String>,
}

impl QueueOf {
    /// The accounting name, given or derived from the experiment with
    /// `derive`; none when the check covers every experiment.
    pub fn group_or(&self, derive: impl Fn(&str) -> String) -> Option<String> {
        self.group
            .clone()
            .or_else(|| self.experiment.as_deref().map(derive))
    }

    /// `jobs of group_nova.prod` — whose jobs were counted, for a verdict.
    pub fn describe(&self, group: Option<&str>) -> String {
        match (group, &self.role) {
            (Some(g), Some(r)) => format!("jobs of {g} ({r})"),
            (Some(g), None) => format!("jobs of {g}"),
            (None, Some(r)) => format!("jobs ({r})"),
            (None, None) => "jobs".into(),
        }
    }
}

/// Kinds of grid credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// An X.509 proxy (PEM certificates): the earliest `notAfter`.
    X509Proxy,
    /// A bearer token (JWT): its `exp` claim.
    BearerToken,
}

impl CredentialKind {
    /// `X.509 proxy` / `bearer token`.
    pub fn label(self) -> &'static str {
        match self {
            CredentialKind::X509Proxy => "X.509 proxy",
            CredentialKind::BearerToken => "bearer token",
        }
    }

    /// When a credential of this kind in `text` stops being valid (seconds since the epoch).
    pub fn expiry(self, text: &str) -> Result<i64, CredentialError> {
        match self {
            CredentialKind::X509Proxy => x509_not_after(text),
            CredentialKind::BearerToken => jwt_expiry(text),
        }
    }
}

/// A check's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// It passed.
    pub ok: bool,
    /// What was seen, in a line (never a secret).
    pub detail: String,
}

impl Verdict {
    /// A pass.
    pub fn pass(detail: impl Into<String>) -> Verdict {
        Verdict {
            ok: true,
            detail: detail.into(),
        }
    }

    /// A failure.
    pub fn fail(detail: impl Into<String>) -> Verdict {
        Verdict {
            ok: false,
            detail: detail.into(),
        }
    }
}

/// Judges an HTTP answer against `Probe::Http`'s expectations.
pub fn judge_http(
    status: u16,
    body: &str,
    expected: u16,
    json_field: Option<&str>,
    json_equals: Option<&str>,
) -> Verdict {
    if status != expected {
        return Verdict::fail(format!("HTTP {status} (expected {expected})"));
    }
    let Some(field) = json_field else {
        return Verdict::pass(format!("HTTP {status}"));
    };
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return Verdict::fail(format!("HTTP {status} but the body is not JSON"));
    };
    let value = field
        .split('.')
        .try_fold(&json, |v, key| v.get(key))
        .map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    match (value, json_equals) {
        (None, _) => Verdict::fail(format!("HTTP {status} but no field `{field}`")),
        (Some(v), Some(want)) if v != want => {
            Verdict::fail(format!("`{field}` is `{v}` (expected `{want}`)"))
        }
        (Some(v), _) => Verdict::pass(format!("HTTP {status}, `{field}` = `{v}`")),
    }
}

/// Judges a credential ending at `expires` (s since the epoch) at `now`.
pub fn judge_lifetime(kind: CredentialKind, expires: i64, now: i64, min_hours: f64) -> Verdict {
    let left = (expires - now) as f64 / 3600.0;
    if expires <= now {
        Verdict::fail(format!("{} expired {:.1} h ago", kind.label(), -left))
    } else if left < min_hours {
        Verdict::fail(format!(
            "{} has {left:.1} h left (needs {min_hours} h)",
            kind.label()
        ))
    } else {
        Verdict::pass(format!("{} has {left:.1} h left", kind.label()))
    }
}

/// Why a credential could not be read; never quotes the credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// A token is not three dot-separated base64url parts.
    #[error("not a JWT (expected header.payload.signature)")]
    NotJwt,
    /// A token's payload has no numeric `exp` claim.
    #[error("the token has no `exp` claim")]
    NoExpiry,
    /// A file holds no PEM certificate.
    #[error("no PEM certificate found")]
    NoCertificate,
    /// A certificate's DER is not what X.509 says.
    #[error("malformed certificate: {0}")]
    Malformed(&'static str),
}

/// The `exp` claim of a JWT (seconds since the epoch).
pub fn jwt_expiry(token: &str) -> Result<i64, CredentialError> {
    let parts: Vec<&str> = token.trim().split('.').collect();
    if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
        return Err(CredentialError::NotJwt);
    }
    let payload = base64_decode(parts[1]).ok_or(CredentialError::NotJwt)?;
    let claims: serde_json::Value =
        serde_json::from_slice(&payload).map_err(|_| CredentialError::NotJwt)?;
    claims
        .get("exp")
        .and_then(|e| e.as_i64().or_else(|| e.as_f64().map(|f| f as i64)))
        .ok_or(CredentialError::NoExpiry)
}

/// The earliest `notAfter` of the certificates in a PEM file (a proxy's
/// own certificate and its chain; keys are skipped).
pub fn x509_not_after(pem: &str) -> Result<i64, CredentialError> {
    let mut earliest: Option<i64> = None;
    let mut lines = pem.lines().map(str::trim);
    while lines.any(|l| l == "-----BEGIN CERTIFICATE-----") {
        let body: String = lines
            .by_ref()
            .take_while(|l| *l != "-----END CERTIFICATE-----")
            .collect();
        let der = base64_decode(&body).ok_or(CredentialError::Malformed("bad base64"))?;
        let end = certificate_not_after(&der)?;
        earliest = Some(earliest.map_or(end, |e| e.min(end)));
    }
    earliest.ok_or(CredentialError::NoCertificate)
}

/// `notAfter` of one DER certificate: Certificate → tbsCertificate →
/// (version) serial signature issuer validity.
fn certificate_not_after(der: &[u8]) -> Result<i64, CredentialError> {
    let (tag, certificate, _) = tlv(der)?;
    expect_sequence(tag)?;
    let (tag, tbs, _) = tlv(certificate)?;
    expect_sequence(tag)?;
    let mut rest = tbs;
    let (tag, _, after) = tlv(rest)?;
    if tag == 0xA0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2;
    }
    let (tag, validity, _) = tlv(rest)?;
    expect_sequence(tag)?;
    let (_, _, after_not_before) = tlv(validity)?;
    let (tag, not_after, _) = tlv(after_not_before)?;
    asn1_time(tag, not_after)
}

fn expect_sequence(tag: u8) -> Result<(), CredentialError> {
    if tag == 0x30 {
        Ok(())
    } else {
        Err(CredentialError::Malformed("expected a SEQUENCE"))
    }
}

/// One DER element: (tag, content, what follows).
fn tlv(data: &[u8]) -> Result<(u8, &[u8], &[u8]), CredentialError> {
    let short = CredentialError::Malformed("truncated");
    let (&tag, rest) = data.split_first().ok_or(short.clone())?;
    let (&first, rest) = rest.split_first().ok_or(short.clone())?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return Err(CredentialError::Malformed("bad length"));
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(short);
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, bytes: &[u8]) -> Result<i64, CredentialError> {
    let bad = CredentialError::Malformed("bad time");
    let text = std::str::from_utf8(bytes).map_err(|_| bad.clone())?;
    let digits = text.strip_suffix('Z').ok_or(bad.clone())?;
    let full = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i32 = digits[..2].parse().map_err(|_| bad.clone())?;
            let century = if yy < 50 { "20" } else { "19" };
            format!("{century}{digits}")
        }
        (0x18, 14) => digits.to_string(),
        _ => return Err(bad),
    };
    chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S")
        .map(|t| t.and_utc().timestamp())
        .map_err(|_| bad)
}

/// Decodes standard or URL-safe base64, padded or not; `None` on any other character.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JWT with these claims (unsigned: only the payload is read).
    fn jwt(claims: &str) -> String {
        fn encode(bytes: &[u8]) -> String {
            const ALPHABET: &[u8] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk.iter().fold(0u32, |acc, b| acc << 8 | *b as u32)
                    << (8 * (3 - chunk.len()));
                for i in 0..=chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
        format!(
            "{}.{}.c2lnbmF0dXJl",
            encode(br#"{"alg":"RS256","typ":"JWT"}"#),
            encode(claims.as_bytes())
        )
    }

    #[test]
    fn j3_a_jwt_expiry_is_read_from_its_payload_and_errors_never_quote_it() {
        let token = jwt(r#"{"sub":"mu2epro","exp":1796171379,"scope":"compute.create"}"#);
        assert_eq!(jwt_expiry(&token), Ok(1796171379));
        assert_eq!(jwt_expiry(&format!("  {token}\n")), Ok(1796171379));
        assert_eq!(
            jwt_expiry(&jwt(r#"{"sub":"x"}"#)),
            Err(CredentialError::NoExpiry)
        );
        for bad in ["", "a.b", "a..c", "not a token at all", "a.!!!.c"] {
            let err = jwt_expiry(bad).unwrap_err().to_string();
            assert!(bad.is_empty() || !err.contains(bad), "{err}");
        }
    }

    #[test]
    fn j3_x509_not_after_is_the_earliest_certificate_end_utc_and_generalized() {
        let proxy = include_str!("../../tests/fixtures/credentials/proxy_with_key.pem");
        assert_eq!(x509_not_after(proxy), Ok(1796171379));
        let long = include_str!("../../tests/fixtures/credentials/long_generalized.pem");
        assert_eq!(x509_not_after(long), Ok(2659998579));
        let chain = format!("{long}\n{proxy}");
        assert_eq!(x509_not_after(&chain), Ok(1796171379));
        assert_eq!(
            x509_not_after("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
            Err(CredentialError::NoCertificate)
        );
        let truncated: String = proxy.lines().take(5).collect::<Vec<_>>().join("\n");
        assert!(x509_not_after(&truncated).is_err());
    }

    #[test]
    fn j3_lifetimes_are_judged_against_the_hours_required() {
        let hour = 3600;
        let kind = CredentialKind::BearerToken;
        assert!(judge_lifetime(kind, 10 * hour, 0, 2.0).ok);
        let short = judge_lifetime(kind, hour, 0, 2.0);
        assert_eq!(
            short,
            Verdict::fail("bearer token has 1.0 h left (needs 2 h)")
        );
        let gone = judge_lifetime(CredentialKind::X509Proxy, 0, hour, 2.0);
        assert_eq!(gone, Verdict::fail("X.509 proxy expired 1.0 h ago"));
    }

    #[test]
    fn p1_http_answers_are_judged_by_status_and_json_field() {
        assert!(judge_http(200, "", 200, None, None).ok);
        assert_eq!(
            judge_http(503, "", 200, None, None),
            Verdict::fail("HTTP 503 (expected 200)")
        );
        let body = r#"{"status":"ok","db":{"up":true}}"#;
        assert!(judge_http(200, body, 200, Some("status"), Some("ok")).ok);
        assert!(judge_http(200, body, 200, Some("db.up"), Some("true")).ok);
        assert_eq!(
            judge_http(
                200,
                r#"{"status":"degraded"}"#,
                200,
                Some("status"),
                Some("ok")
            ),
            Verdict::fail("`status` is `degraded` (expected `ok`)")
        );
        assert!(!judge_http(200, "<html>", 200, Some("status"), None).ok);
    }

    #[test]
    fn scopes_match_experiment_and_backend() {
        let all = Scope::default();
        assert!(all.covers("mu2e", "slurm"));
        assert_eq!(all.describe(), "all submissions");
        let mu2e_jobsub = Scope {
            experiment: Some("mu2e".into()),
            backend: Some("jobsub".into()),
        };
        assert!(mu2e_jobsub.covers("mu2e", "jobsub"));
        assert!(!mu2e_jobsub.covers("mu2e", "slurm"));
        assert!(!mu2e_jobsub.covers("dune", "jobsub"));
        assert_eq!(mu2e_jobsub.describe(), "experiment mu2e, backend jobsub");
    }
}
