//! Turns the credentials on a request into a [`Principal`], in Portainer's
//! order: `X-API-Key` header, the `portainer_api_key` cookie, then
//! `Authorization: Bearer`. A credential that is present but invalid fails
//! at once; it never falls through to the next. `?token=` in the query
//! string is refused (it leaks into logs and Referer headers).

use std::sync::Arc;

use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::identity::Identity;
use super::jwt::{JwtError, JwtKeys};
use crate::access::scope;
use crate::error::ApiError;
use crate::store::model::{ApiKey, Endpoint, KeyScope, User};

pub const COOKIE_NAME: &str = "portainer_api_key";

/// The caller, as every handler sees it. The role comes from the user
/// record in memory, not from the token: a demoted admin loses admin rights
/// on the next request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: Arc<User>,
    /// Set when authenticated by API key (some routes insist on a JWT).
    pub via_api_key: bool,
    /// The token's id and expiry, for logout.
    pub jti: Option<(String, u64)>,
    /// From the token: the password used to log in is shorter than the
    /// required length, so clients should ask for a new one.
    pub force_change_password: bool,
    /// Set when the connection's client certificate (a bundle) authenticated
    /// the request: its id names it in the access log, its scope narrows
    /// the request like a scoped key's (when no header credential came too).
    pub bundle: Option<Arc<crate::store::model::Bundle>>,
    /// The API key that authenticated the request, for the audit trail.
    pub api_key_id: Option<u64>,
    /// The API key, only when it carries restrictions (scope or expiry):
    /// `None` for JWTs and unrestricted keys, so their requests pay one
    /// `is_none` branch for scopes. Narrows, never widens, the user's rights.
    pub scoped_key: Option<Arc<ApiKey>>,
}

impl Principal {
    /// A signed-in user with this id and role, for unit tests of the
    /// modules that decide on principals.
    #[cfg(test)]
    pub(crate) fn for_tests(id: u64, role: u8) -> Principal {
        Principal {
            user: std::sync::Arc::new(crate::store::model::User::new(id, "u", String::new(), role)),
            via_api_key: false,
            jti: None,
            force_change_password: false,
            bundle: None,
            scoped_key: None,
            api_key_id: None,
        }
    }

    /// The key's scope when it has one that narrows anything.
    pub fn scope(&self) -> Option<&KeyScope> {
        match &self.scoped_key {
            Some(k) => Some(&k.scope),
            None => self.bundle.as_deref().and_then(|b| b.scope.as_ref()),
        }
    }

    /// A bundle that names the caller for the log but narrows nothing.
    fn unscoped(b: Arc<crate::store::model::Bundle>) -> Arc<crate::store::model::Bundle> {
        if b.scope.is_none() {
            return b;
        }
        Arc::new(crate::store::model::Bundle { scope: None, ..(*b).clone() })
    }

    /// Whether the key (if scoped) may reach this endpoint: list filters
    /// and access checks ask this beside the user's own rights.
    pub fn endpoint_in_scope(&self, record: &Endpoint) -> bool {
        self.scope().is_none_or(|s| scope::covers(s, record.id, Some(record.group_id)))
    }

    /// Whether the key is limited to some endpoints (instance-wide views
    /// such as orphaned stacks are then closed to it).
    pub fn limits_endpoints(&self) -> bool {
        self.scope().is_some_and(KeyScope::limits_endpoints)
    }

    pub fn is_admin(&self) -> bool {
        self.user.is_admin()
    }

    pub fn id(&self) -> u64 {
        self.user.id
    }
}

/// Why authentication failed: the label of the auth-failure metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    QueryToken,
    BadJwt,
    Expired,
    Revoked,
    UserGone,
    BadApiKey,
    /// An API key past its `expiresAt`.
    ExpiredApiKey,
    BothCredentials,
    /// An `Authorization` header that is not `Bearer <token>` (or a bare
    /// token, which Portainer accepts): another scheme, no token, extra
    /// spaces or characters a token cannot hold.
    MalformedAuthorization,
    /// A client certificate of Berth's CA whose bundle was revoked (or
    /// never issued by this store).
    BundleRevoked,
    BundleExpired,
    /// A client certificate of one user and a header credential of another.
    CertificateMismatch,
}

impl AuthFailure {
    pub fn label(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::QueryToken => "query_token",
            AuthFailure::BadJwt => "invalid_jwt",
            AuthFailure::Expired => "expired",
            AuthFailure::Revoked => "revoked",
            AuthFailure::UserGone => "user_gone",
            AuthFailure::BadApiKey => "invalid_api_key",
            AuthFailure::ExpiredApiKey => "expired_api_key",
            AuthFailure::BothCredentials => "both_credentials",
            AuthFailure::MalformedAuthorization => "malformed_authorization",
            AuthFailure::BundleRevoked => "bundle_revoked",
            AuthFailure::BundleExpired => "bundle_expired",
            AuthFailure::CertificateMismatch => "certificate_mismatch",
        }
    }

    pub fn to_error(self) -> ApiError {
        match self {
            AuthFailure::Missing => ApiError::unauthorized("A valid authorization token is missing"),
            AuthFailure::QueryToken => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "A valid authorization token is missing",
                "Tokens in the query string are refused: send an Authorization: Bearer header",
            ),
            AuthFailure::UserGone => ApiError::unauthorized("An authorization token is invalid"),
            AuthFailure::ExpiredApiKey => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "API key expired",
                "This API key is past its expiresAt: create a new one",
            ),
            AuthFailure::BothCredentials => ApiError::forbidden(
                "api key and auth header are not allowed at the same time",
                "api key and auth header are not allowed at the same time",
            ),
            AuthFailure::MalformedAuthorization => ApiError::bad_request(
                "Invalid Authorization header",
                "expected \"Authorization: Bearer <token>\": the scheme Bearer, one space, then the token",
            ),
            AuthFailure::BundleRevoked => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "Invalid client certificate",
                "this client bundle was revoked",
            ),
            AuthFailure::BundleExpired => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "Invalid client certificate",
                "this client bundle has expired",
            ),
            AuthFailure::CertificateMismatch => ApiError::new(
                http::StatusCode::UNAUTHORIZED,
                "Conflicting credentials",
                "the client certificate and the credential header name different users",
            ),
            AuthFailure::BadJwt | AuthFailure::Expired | AuthFailure::Revoked | AuthFailure::BadApiKey => {
                ApiError::unauthorized("Invalid JWT token")
            }
        }
    }
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    for h in headers.get_all(http::header::COOKIE) {
        let Ok(s) = h.to_str() else { continue };
        for part in s.split(';') {
            let part = part.trim();
            if let Some(v) = part.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Some(v);
            }
        }
    }
    None
}

fn query_has_token(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|kv| kv == "token" || kv.starts_with("token=")))
}

/// The token of an `Authorization` value: `Bearer <token>` with the scheme
/// in any case and exactly one space (RFC 6750's form, as clients send it),
/// or a bare JWT as Portainer also accepts. The token must be an RFC 6750
/// `b64token`; anything else (another scheme, `Bearer` alone, two spaces,
/// two tokens) is malformed and answered 400 rather than tried as a token.
fn bearer_token(value: &[u8]) -> Option<&str> {
    let token = match value.iter().position(|&b| b == b' ') {
        Some(i) if value[..i].eq_ignore_ascii_case(b"bearer") => &value[i + 1..],
        Some(_) => return None,
        // Bare: only a JWT's shape (three dot-separated parts), so that a
        // lone scheme name (`Bearer`, `Basic`) is not taken for a token.
        None if value.iter().filter(|&&b| b == b'.').count() == 2 => value,
        None => return None,
    };
    let body_len = token.iter().take_while(|&&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)).count();
    let valid = body_len > 0 && token[body_len..].iter().all(|&b| b == b'=');
    // Only ASCII bytes passed the check above.
    valid.then(|| std::str::from_utf8(token).ok()).flatten()
}

/// Whether the request carries a credential header (or the session cookie).
fn has_credentials(headers: &HeaderMap) -> bool {
    headers.contains_key("x-api-key")
        || headers.contains_key(http::header::AUTHORIZATION)
        || cookie_value(headers, COOKIE_NAME).is_some()
}

/// [`authenticate`] on a connection that presented a client certificate
/// (`cert`, verified by the TLS handshake): alone, the certificate's live
/// bundle is the caller; with a credential header too, both must name the
/// same user.
pub fn authenticate_with_cert(
    headers: &HeaderMap,
    query: Option<&str>,
    cert: Option<&crate::bundles::ClientCert>,
    identity: &Identity,
    keys: &JwtKeys,
    bundles: &crate::bundles::Bundles,
) -> Result<Principal, AuthFailure> {
    let Some(cert) = cert else {
        return authenticate(headers, query, identity, keys);
    };
    let bundle = bundles.authenticate(cert, super::now_secs()).map_err(|r| match r {
        crate::bundles::Refusal::Revoked => AuthFailure::BundleRevoked,
        crate::bundles::Refusal::Expired => AuthFailure::BundleExpired,
    })?;
    if has_credentials(headers) {
        let p = authenticate(headers, query, identity, keys)?;
        if p.id() != bundle.user_id {
            return Err(AuthFailure::CertificateMismatch);
        }
        // The header's credential (and its scope) decides: the user holds
        // both, so neither can reach beyond what the user may do.
        return Ok(Principal { bundle: Some(Principal::unscoped(bundle)), ..p });
    }
    let user = identity.user(bundle.user_id).ok_or(AuthFailure::UserGone)?;
    Ok(Principal {
        user,
        via_api_key: false,
        jti: None,
        force_change_password: false,
        scoped_key: None,
        bundle: Some(bundle),
        api_key_id: None,
    })
}

/// Authenticates a request from its headers and query string alone: no
/// store access, no lock beyond a dashmap shard read.
pub fn authenticate(
    headers: &HeaderMap,
    query: Option<&str>,
    identity: &Identity,
    keys: &JwtKeys,
) -> Result<Principal, AuthFailure> {
    let api_key = headers.get("x-api-key");
    let cookie = cookie_value(headers, COOKIE_NAME);
    let bearer = headers.get(http::header::AUTHORIZATION);
    if api_key.is_some() && bearer.is_some() && cookie.is_none() {
        return Err(AuthFailure::BothCredentials);
    }
    if let Some(k) = api_key {
        let raw = k.to_str().map_err(|_| AuthFailure::BadApiKey)?;
        let digest = super::apikey::digest(raw.trim());
        let key = identity.api_key_by_digest(&digest).ok_or(AuthFailure::BadApiKey)?;
        let stored = super::apikey::digest_b64(&digest);
        if !bool::from(stored.as_bytes().ct_eq(key.digest.as_bytes())) {
            return Err(AuthFailure::BadApiKey);
        }
        let now = super::now_secs();
        // Checked on every request, like the user's rights below: no
        // cached answer outlives the key.
        if key.expires_at != 0 && now >= key.expires_at {
            return Err(AuthFailure::ExpiredApiKey);
        }
        let user = identity.user(key.user_id).ok_or(AuthFailure::UserGone)?;
        identity.touch_api_key(&key, now);
        let key_id = key.id;
        let scoped_key = key.is_restricted().then_some(key);
        return Ok(Principal {
            user,
            via_api_key: true,
            jti: None,
            force_change_password: false,
            scoped_key,
            bundle: None,
            api_key_id: Some(key_id),
        });
    }
    let token = if let Some(c) = cookie {
        c
    } else if let Some(b) = bearer {
        bearer_token(b.as_bytes()).ok_or(AuthFailure::MalformedAuthorization)?
    } else if query_has_token(query) {
        return Err(AuthFailure::QueryToken);
    } else {
        return Err(AuthFailure::Missing);
    };
    let claims = identity.verify_token(keys, token).map_err(|e| match e {
        JwtError::Expired => AuthFailure::Expired,
        JwtError::Invalid => AuthFailure::BadJwt,
    })?;
    if claims.scope != "default" {
        return Err(AuthFailure::BadJwt);
    }
    if identity.is_revoked(&claims.jti) {
        return Err(AuthFailure::Revoked);
    }
    let user = identity.user(claims.id).ok_or(AuthFailure::UserGone)?;
    // A password or role change after the token was issued kills it: the
    // generation counter is exact where second-resolution `iat` is not.
    if claims.gen != user.token_generation || claims.iat < user.token_issue_at {
        return Err(AuthFailure::Revoked);
    }
    Ok(Principal {
        user,
        via_api_key: false,
        force_change_password: claims.force_change_password,
        jti: Some((claims.jti.clone(), claims.exp)),
        bundle: None,
        scoped_key: None,
        api_key_id: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_parsing_finds_the_named_cookie() {
        let mut h = HeaderMap::new();
        h.insert(http::header::COOKIE, "a=1; portainer_api_key=tok; b=2".parse().unwrap());
        assert_eq!(cookie_value(&h, COOKIE_NAME), Some("tok"));
        assert_eq!(cookie_value(&h, "c"), None);
    }

    #[test]
    fn authorization_values_are_bearer_and_one_token() {
        for (value, token) in [
            ("Bearer abc.def-_~+/ghi==", "abc.def-_~+/ghi=="),
            ("bearer abc", "abc"),
            ("BEARER abc", "abc"),
            ("abc.def.ghi", "abc.def.ghi"),
        ] {
            assert_eq!(bearer_token(value.as_bytes()), Some(token), "{value:?}");
        }
        for value in [
            "",
            "Bearer",
            "bearer",
            "abc",
            "Bearer ",
            "Bearer  abc",
            "Bearer abc ",
            "Bearer abc def",
            "Bearer\tabc",
            "Basic dXNlcjpwdw==",
            "Token abc",
            " Bearer abc",
            "Bearer a=b",
            "Bearer =",
            "Bearer a\u{e9}",
            "Bearer a,b",
            "Bearer a\"b",
        ] {
            assert_eq!(bearer_token(value.as_bytes()), None, "{value:?}");
        }
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, "Bearer  x".parse().unwrap());
        let (identity, keys) = (Identity::default(), JwtKeys::from_secret(&[7u8; 32]));
        let e = authenticate(&h, None, &identity, &keys).unwrap_err();
        assert_eq!(e, AuthFailure::MalformedAuthorization);
        assert_eq!(e.to_error().status(), http::StatusCode::BAD_REQUEST);
    }

    /// A key of user 1 with this expiry and access; returns the raw key.
    fn key_of(identity: &Identity, id: u64, expires_at: u64, access: crate::store::model::KeyAccess) -> String {
        let (raw, key) = super::super::apikey::for_tests(id, 1);
        identity.put_api_key(ApiKey { expires_at, scope: KeyScope { access, ..Default::default() }, ..key });
        raw
    }

    #[test]
    fn keys_carry_their_scope_only_when_restricted_and_expire() {
        use crate::store::model::KeyAccess;
        let (identity, keys) = (Identity::default(), JwtKeys::from_secret(&[7u8; 32]));
        identity.put_user(User::new(1, "u", String::new(), 1));
        let now = super::super::now_secs();
        let auth = |raw: &str| {
            let mut h = HeaderMap::new();
            h.insert("x-api-key", raw.parse().unwrap());
            authenticate(&h, None, &identity, &keys)
        };
        let plain = key_of(&identity, 1, 0, KeyAccess::Full);
        assert!(auth(&plain).unwrap().scope().is_none(), "an unrestricted key pays nothing");
        let read = key_of(&identity, 2, now + 600, KeyAccess::Read);
        let p = auth(&read).unwrap();
        assert_eq!(p.scope().map(|s| s.access), Some(KeyAccess::Read));
        assert!(p.is_admin(), "the scope narrows; the user's role is still read live");
        let only_expiring = key_of(&identity, 3, now + 600, KeyAccess::Full);
        assert!(auth(&only_expiring).unwrap().scope().is_some_and(|s| s.is_unrestricted()));
        let expired = key_of(&identity, 4, now, KeyAccess::Full);
        let e = auth(&expired).unwrap_err();
        assert_eq!(e, AuthFailure::ExpiredApiKey);
        assert_eq!(e.label(), "expired_api_key");
        let err = e.to_error();
        assert_eq!(err.status(), http::StatusCode::UNAUTHORIZED);
        assert!(err.message.contains("expired"));
    }

    #[test]
    fn query_tokens_are_detected() {
        assert!(query_has_token(Some("a=1&token=x")));
        assert!(!query_has_token(Some("tokens=1")));
        assert!(!query_has_token(None));
    }
}
