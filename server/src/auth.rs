//! JWT authentication: verifying the tokens clients present (HS256 with the server secret, or
//! ES256 with a configured public key), minting tokens for `easel token`, and finding the
//! secret (flag, env, or the dev-mode file in the data dir).
//!
//! Verification is sans-IO: the current time is an argument, so expiry and `nbf` are
//! testable. (jsonwebtoken's own time checks read the system clock, so they stay off; its
//! issuer and audience checks are used.)

use std::path::Path;
use std::time::Duration;

use easel_proto::ErrorCode;
use easel_proto::message::Role;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::revoke::Revocations;

/// Name of the dev-mode secret file inside the data dir.
pub const DEV_SECRET_FILE: &str = "dev-jwt-secret";
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_LEN: usize = 32;
/// How far in the future a token's `nbf` (not before) may lie and the token still be accepted:
/// the clock skew tolerated between the issuer and this server (SPEC §5.2).
pub const NBF_LEEWAY_SECS: u64 = 60;

/// Why a token was refused, or a secret could not be found.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// Hello carried no token.
    #[error("no token")]
    Missing,
    /// Malformed, wrong algorithm, bad signature or missing claims.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
    /// `nbf` lies further in the future than [`NBF_LEEWAY_SECS`].
    #[error("token not valid before {nbf} (server time {now}, leeway {NBF_LEEWAY_SECS} s)")]
    NotYetValid {
        /// The token's `nbf`.
        nbf: u64,
        /// The server's time.
        now: u64,
    },
    /// The secret is too short, or no secret is configured where one is required.
    #[error("{0}")]
    Secret(String),
    /// Revoked by an operator (SPEC §5.3).
    #[error("token revoked")]
    Revoked,
}

impl AuthError {
    /// The wire code (SPEC §14) for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::Unauthenticated,
            Self::Invalid(_) | Self::Secret(_) | Self::NotYetValid { .. } => ErrorCode::InvalidToken,
            Self::Expired => ErrorCode::TokenExpired,
            Self::Revoked => ErrorCode::TokenRevoked,
        }
    }
}

/// The claims of an Easel token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// Room id, or a pattern ending in `/*` granting every room under a prefix.
    pub room: String,
    /// `teacher`, `student` or `viewer`.
    pub role: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Not before, seconds since the Unix epoch (honoured with [`NBF_LEEWAY_SECS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// Issuer; checked when the server is configured with one (`--jwt-issuer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id, by which one token can be revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Audience, when minting. On verification it is checked against the configured one
    /// (`--jwt-audience`; a list in the token is fine) and not kept: always `None` here.
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub aud: Option<String>,
}

impl Claims {
    /// Claims with only what every token needs.
    pub fn new(sub: &str, room: &str, role: &str, exp: u64) -> Self {
        Self {
            sub: sub.into(),
            room: room.into(),
            role: role.into(),
            exp,
            iat: None,
            name: None,
            nbf: None,
            iss: None,
            jti: None,
            aud: None,
        }
    }

    /// The role; verification guarantees it parses.
    pub fn role(&self) -> Role {
        parse_role(&self.role).unwrap_or(Role::Viewer)
    }

    /// Whether the token grants `room`.
    pub fn grants(&self, room: &str) -> bool {
        easel_proto::room::validate_id(room).is_ok() && easel_proto::room::matches(&self.room, room)
    }
}

/// Parses `teacher`, `student` or `viewer`.
pub fn parse_role(role: &str) -> Option<Role> {
    match role {
        "teacher" => Some(Role::Teacher),
        "student" => Some(Role::Student),
        "viewer" => Some(Role::Viewer),
        _ => None,
    }
}

/// Checks tokens.
pub struct Verifier {
    hs256: DecodingKey,
    es256: Option<DecodingKey>,
    issuer: Option<String>,
    audience: Option<String>,
    revoked: Revocations,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("es256", &self.es256.is_some())
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for HS256 tokens signed with `secret` and, if given, ES256 tokens signed by
    /// the key whose PEM public key is `es256_pem`.
    pub fn new(secret: &[u8], es256_pem: Option<&[u8]>) -> Result<Self, AuthError> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::Secret(format!("the JWT secret must be at least {MIN_SECRET_LEN} bytes")));
        }
        let es256 = es256_pem
            .map(|pem| {
                DecodingKey::from_ec_pem(pem).map_err(|e| AuthError::Secret(format!("ES256 public key: {e}")))
            })
            .transpose()?;
        Ok(Self {
            hs256: DecodingKey::from_secret(secret),
            es256,
            issuer: None,
            audience: None,
            revoked: Revocations::default(),
        })
    }

    /// Also requires `iss` to be `issuer` and `aud` to include `audience`, each when given; a
    /// token without the claim is then refused.
    pub fn expecting(mut self, issuer: Option<&str>, audience: Option<&str>) -> Self {
        self.issuer = issuer.map(str::to_owned);
        self.audience = audience.map(str::to_owned);
        self
    }

    /// Also refuses what `revoked` lists (and will list: it is shared).
    pub fn revoking(mut self, revoked: Revocations) -> Self {
        self.revoked = revoked;
        self
    }

    /// The revocations this verifier honours.
    pub fn revocations(&self) -> &Revocations {
        &self.revoked
    }

    /// Verifies `token` at `now` (seconds since the epoch) and returns its claims.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        let invalid = |e: jsonwebtoken::errors::Error| AuthError::Invalid(e.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(invalid)?;
        let key = match header.alg {
            Algorithm::HS256 => &self.hs256,
            Algorithm::ES256 => self
                .es256
                .as_ref()
                .ok_or_else(|| AuthError::Invalid("ES256 tokens are not configured".into()))?,
            other => return Err(AuthError::Invalid(format!("algorithm {other:?} is not accepted"))),
        };
        let mut validation = Validation::new(header.alg);
        // Expiry and nbf are checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        // Unconfigured, an audience is not checked (jsonwebtoken would refuse any token that
        // names one).
        validation.validate_aud = self.audience.is_some();
        if let Some(audience) = &self.audience {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let claims = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(invalid)?.claims;
        if claims.exp <= now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.nbf.filter(|nbf| *nbf > now.saturating_add(NBF_LEEWAY_SECS)) {
            return Err(AuthError::NotYetValid { nbf, now });
        }
        if parse_role(&claims.role).is_none() {
            return Err(AuthError::Invalid(format!("unknown role {:?}", claims.role)));
        }
        if claims.sub.is_empty() || claims.sub.len() > easel_proto::limits::MAX_NAME_LEN {
            return Err(AuthError::Invalid("sub must be 1 to 64 bytes".into()));
        }
        easel_proto::room::validate_pattern(&claims.room)
            .map_err(|e| AuthError::Invalid(format!("room claim: {e}")))?;
        if self.revoked.revokes(&claims) {
            return Err(AuthError::Revoked);
        }
        Ok(claims)
    }
}

/// Signs tokens (for `easel token` and tests).
pub struct Issuer {
    key: EncodingKey,
    alg: Algorithm,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer").field("alg", &self.alg).finish_non_exhaustive()
    }
}

impl Issuer {
    /// An HS256 issuer.
    pub fn hs256(secret: &[u8]) -> Self {
        Self { key: EncodingKey::from_secret(secret), alg: Algorithm::HS256 }
    }

    /// An ES256 issuer from a PKCS#8 PEM private key.
    pub fn es256(private_pem: &[u8]) -> Result<Self, AuthError> {
        let key = EncodingKey::from_ec_pem(private_pem)
            .map_err(|e| AuthError::Secret(format!("ES256 key: {e}")))?;
        Ok(Self { key, alg: Algorithm::ES256 })
    }

    /// Signs `claims`.
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(self.alg), claims, &self.key)
            .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

/// Where the HS256 secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    /// `--jwt-secret` or `EASEL_JWT_SECRET`.
    Configured,
    /// Dev mode: generated once and kept in the data dir.
    DevFile,
}

/// Finds the HS256 secret: the configured one, else (only when every address is loopback) the
/// dev-mode secret in `data_dir`, generated on first use.
pub fn resolve_secret(
    configured: Option<&str>,
    data_dir: &Path,
    loopback_only: bool,
) -> Result<(Vec<u8>, SecretSource), AuthError> {
    if let Some(secret) = configured {
        if secret.len() < MIN_SECRET_LEN {
            return Err(AuthError::Secret(format!(
                "--jwt-secret / EASEL_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes"
            )));
        }
        return Ok((secret.as_bytes().to_vec(), SecretSource::Configured));
    }
    if !loopback_only {
        return Err(AuthError::Secret(
            "refusing to start: listening on a non-loopback address without --jwt-secret or EASEL_JWT_SECRET \
             (the dev-mode secret is only allowed on loopback)"
                .into(),
        ));
    }
    let path = data_dir.join(DEV_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) if s.trim().len() >= MIN_SECRET_LEN => {
            return Ok((s.trim().as_bytes().to_vec(), SecretSource::DevFile));
        }
        Ok(_) => {
            return Err(AuthError::Secret(format!(
                "{} is shorter than {MIN_SECRET_LEN} bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AuthError::Secret(format!("{}: {e}", path.display()))),
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| AuthError::Secret(format!("{}: {e}", data_dir.display())))?;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let secret = hex::encode(bytes);
    write_private(&path, secret.as_bytes())
        .map_err(|e| AuthError::Secret(format!("{}: {e}", path.display())))?;
    Ok((secret.into_bytes(), SecretSource::DevFile))
}

/// Writes a file readable by its owner only, atomically (a crash leaves no half-written secret).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// A token lifetime that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TtlError {
    /// No number where one was expected.
    #[error("invalid lifetime {0:?}: expected e.g. 90s, 15m, 1h, 7d")]
    Invalid(String),
    /// A unit other than s, m, h or d.
    #[error("invalid lifetime unit {0:?}: use s, m, h or d")]
    Unit(String),
    /// Zero, or too long to represent.
    #[error("lifetime {0:?} out of range")]
    OutOfRange(String),
}

/// Parses a lifetime such as `90s`, `15m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(ttl: &str) -> Result<Duration, TtlError> {
    let ttl = ttl.trim();
    let split = ttl.find(|c: char| !c.is_ascii_digit()).unwrap_or(ttl.len());
    let (number, unit) = ttl.split_at(split);
    let n: u64 = number.parse().map_err(|_| TtlError::Invalid(ttl.to_owned()))?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(TtlError::Unit(unit.to_owned())),
    };
    let secs = n.checked_mul(scale).filter(|s| *s > 0).ok_or_else(|| TtlError::OutOfRange(ttl.to_owned()))?;
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn claims(room: &str, role: &str, exp: u64) -> Claims {
        Claims::new("ada", room, role, exp)
    }

    #[test]
    fn hs256_round_trip_and_refusals() {
        let verifier = Verifier::new(SECRET, None).expect("verifier");
        let token = Issuer::hs256(SECRET).mint(&claims("uni/math/*", "teacher", 2000)).expect("mint");
        let got = verifier.verify(&token, 1000).expect("valid");
        assert_eq!(got.role(), Role::Teacher);
        assert!(got.grants("uni/math/monday"));
        assert!(!got.grants("uni/physics/monday"));

        assert_eq!(verifier.verify(&token, 2000).map_err(|e| e.code()).err(), Some(ErrorCode::TokenExpired));
        assert_eq!(verifier.verify("", 0).map_err(|e| e.code()).err(), Some(ErrorCode::Unauthenticated));
        let forged = Issuer::hs256(b"another-secret-another-secret-xx").mint(&claims("r", "teacher", 2000));
        let code = verifier.verify(&forged.expect("mint"), 1000).map_err(|e| e.code()).err();
        assert_eq!(code, Some(ErrorCode::InvalidToken));
        let bad_role = Issuer::hs256(SECRET).mint(&claims("r", "admin", 2000)).expect("mint");
        assert!(matches!(verifier.verify(&bad_role, 1000), Err(AuthError::Invalid(_))));
        assert!(matches!(verifier.verify("not.a.jwt", 1000), Err(AuthError::Invalid(_))));
    }

    #[test]
    fn nbf_is_honoured_with_the_stated_leeway() {
        let verifier = Verifier::new(SECRET, None).expect("verifier");
        let at = |nbf| {
            let token =
                Issuer::hs256(SECRET).mint(&Claims { nbf: Some(nbf), ..claims("r", "student", 9000) });
            verifier.verify(&token.expect("mint"), 1000)
        };
        assert!(at(1000 + NBF_LEEWAY_SECS).is_ok(), "within the leeway");
        let early = at(1000 + NBF_LEEWAY_SECS + 1).expect_err("an hour early is refused");
        assert!(matches!(early, AuthError::NotYetValid { nbf: 1061, now: 1000 }), "{early}");
        assert_eq!(early.code(), ErrorCode::InvalidToken);
        assert!(at(4600).is_err(), "an hour ahead");
    }

    #[test]
    fn issuer_and_audience_are_checked_only_when_configured() {
        let issuer = Issuer::hs256(SECRET);
        let mint = |iss: Option<&str>, aud: Option<&str>| {
            let claims =
                Claims { iss: iss.map(Into::into), aud: aud.map(Into::into), ..claims("r", "student", 9000) };
            issuer.mint(&claims).expect("mint")
        };
        let open = Verifier::new(SECRET, None).expect("verifier");
        assert!(open.verify(&mint(Some("idp"), Some("easel")), 1000).is_ok(), "unconfigured: anything");
        assert!(open.verify(&mint(None, None), 1000).is_ok());

        let strict = Verifier::new(SECRET, None).expect("verifier").expecting(Some("idp"), Some("easel"));
        let got = strict.verify(&mint(Some("idp"), Some("easel")), 1000).expect("both match");
        assert_eq!(got.iss.as_deref(), Some("idp"));
        for (iss, aud) in [
            (Some("other"), Some("easel")),
            (Some("idp"), Some("other")),
            (None, Some("easel")),
            (Some("idp"), None),
        ] {
            let refused = strict.verify(&mint(iss, aud), 1000).expect_err("mismatch or missing");
            assert_eq!(refused.code(), ErrorCode::InvalidToken, "{iss:?} {aud:?}: {refused}");
        }
    }

    #[test]
    fn es256_with_configured_key() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let issuer = Issuer::es256(key.serialize_pem().as_bytes()).expect("issuer");
        let token = issuer.mint(&claims("room-1", "student", 2000)).expect("mint");
        let without = Verifier::new(SECRET, None).expect("verifier");
        assert!(matches!(without.verify(&token, 1000), Err(AuthError::Invalid(_))), "ES256 not configured");
        let with = Verifier::new(SECRET, Some(key.public_key_pem().as_bytes())).expect("verifier");
        assert_eq!(with.verify(&token, 1000).expect("valid").role(), Role::Student);
    }

    #[test]
    fn secret_resolution() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(resolve_secret(Some("short"), dir.path(), true).is_err());
        assert!(resolve_secret(None, dir.path(), false).is_err(), "no dev secret off loopback");
        let (first, source) = resolve_secret(None, dir.path(), true).expect("dev secret");
        assert_eq!(source, SecretSource::DevFile);
        let (again, _) = resolve_secret(None, dir.path(), true).expect("dev secret");
        assert_eq!(first, again, "generated once, then kept");
        let configured = std::str::from_utf8(SECRET).expect("utf8");
        assert_eq!(resolve_secret(Some(configured), dir.path(), false).expect("ok").0, SECRET);
    }

    #[test]
    fn ttl_parsing() {
        assert_eq!(parse_ttl("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_ttl("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_ttl("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_ttl("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_ttl("1w").is_err());
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("h").is_err());
    }
}
