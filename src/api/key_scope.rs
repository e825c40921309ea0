//! The restrictions `POST /api/users/{id}/tokens` takes beside Portainer's
//! `password` and `description` (issue 17): `expiresAt`, `endpointIds`,
//! `groupIds` and `access`, checked strictly here so that a key never
//! stores a restriction Berth would read another way than the client meant.

use crate::error::{ApiError, ApiResult};
use crate::store::model::{Id, KeyAccess, KeyScope};

/// The farthest expiry a key may have: ten years (of 365 days).
pub const MAX_LIFETIME_SECS: u64 = 10 * 365 * 24 * 3600;

/// The longest `endpointIds` or `groupIds` list.
pub const MAX_IDS: usize = 256;

/// The restrictions as the client sent them (`None`: not sent, or `null`).
#[derive(Debug, Default)]
pub struct Requested {
    pub expires_at: Option<i64>,
    pub endpoint_ids: Option<Vec<i64>>,
    pub group_ids: Option<Vec<i64>>,
    pub access: Option<String>,
}

fn invalid(details: String) -> ApiError {
    ApiError::invalid_payload(details)
}

fn ids(name: &str, list: Option<Vec<i64>>) -> ApiResult<Vec<Id>> {
    let Some(list) = list else { return Ok(Vec::new()) };
    // An empty list would read as "no restriction": refused, so that a
    // client that computed an empty set does not get an unlimited key.
    if list.is_empty() {
        return Err(invalid(format!("Invalid {name}: must list at least one id, or be left out")));
    }
    if list.len() > MAX_IDS {
        return Err(invalid(format!("Invalid {name}: at most {MAX_IDS} ids")));
    }
    let mut out: Vec<Id> = Vec::with_capacity(list.len());
    for id in list {
        let Ok(id) = Id::try_from(id) else {
            return Err(invalid(format!("Invalid {name}: {id} is not a positive id")));
        };
        if id == 0 {
            return Err(invalid(format!("Invalid {name}: 0 is not a positive id")));
        }
        if out.contains(&id) {
            return Err(invalid(format!("Invalid {name}: {id} is listed twice")));
        }
        out.push(id);
    }
    Ok(out)
}

/// Checks the restrictions against the clock `now` (unix seconds) and
/// returns the key's expiry (0 = never) and scope.
pub fn validate(r: Requested, now: u64) -> ApiResult<(u64, KeyScope)> {
    let expires_at = match r.expires_at {
        None => 0,
        Some(t) => {
            let t = u64::try_from(t).map_err(|_| invalid(format!("Invalid expiresAt: {t} is negative")))?;
            if t <= now {
                return Err(invalid(format!("Invalid expiresAt: {t} is not in the future (now is {now})")));
            }
            if t - now > MAX_LIFETIME_SECS {
                return Err(invalid(format!("Invalid expiresAt: at most ten years ahead ({MAX_LIFETIME_SECS} s)")));
            }
            t
        }
    };
    let access = match r.access.as_deref() {
        None | Some("full") => KeyAccess::Full,
        Some("read") => KeyAccess::Read,
        Some("operate") => KeyAccess::Operate,
        Some(other) => {
            return Err(invalid(format!("Invalid access: {other:?} is not one of \"read\", \"operate\", \"full\"")))
        }
    };
    let scope = KeyScope {
        endpoint_ids: ids("endpointIds", r.endpoint_ids)?,
        group_ids: ids("groupIds", r.group_ids)?,
        access,
    };
    Ok((expires_at, scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn err(r: Requested) -> String {
        let e = validate(r, NOW).unwrap_err();
        assert_eq!(e.status(), http::StatusCode::BAD_REQUEST);
        e.details
    }

    #[test]
    fn nothing_requested_is_portainers_unrestricted_key() {
        assert_eq!(validate(Requested::default(), NOW).unwrap(), (0, KeyScope::default()));
        let full = Requested { access: Some("full".into()), ..Default::default() };
        assert_eq!(validate(full, NOW).unwrap(), (0, KeyScope::default()));
    }

    #[test]
    fn valid_restrictions_are_kept() {
        let r = Requested {
            expires_at: Some(NOW as i64 + 60),
            endpoint_ids: Some(vec![1, 3]),
            group_ids: Some(vec![2]),
            access: Some("operate".into()),
        };
        let (exp, scope) = validate(r, NOW).unwrap();
        assert_eq!(exp, NOW + 60);
        assert_eq!(scope, KeyScope { endpoint_ids: vec![1, 3], group_ids: vec![2], access: KeyAccess::Operate });
        let at_limit = Requested { expires_at: Some((NOW + MAX_LIFETIME_SECS) as i64), ..Default::default() };
        assert!(validate(at_limit, NOW).is_ok());
    }

    #[test]
    fn bad_restrictions_are_400s_that_say_why() {
        let e = |f: fn(&mut Requested)| {
            let mut r = Requested::default();
            f(&mut r);
            err(r)
        };
        assert!(e(|r| r.expires_at = Some(NOW as i64)).contains("not in the future"));
        assert!(e(|r| r.expires_at = Some(NOW as i64 - 5)).contains("not in the future"));
        assert!(e(|r| r.expires_at = Some(-1)).contains("negative"));
        assert!(e(|r| r.expires_at = Some((NOW + MAX_LIFETIME_SECS + 1) as i64)).contains("ten years"));
        assert!(e(|r| r.access = Some("admin".into())).contains("\"admin\" is not one of"));
        assert!(e(|r| r.access = Some("Read".into())).contains("is not one of"));
        assert!(e(|r| r.endpoint_ids = Some(vec![])).contains("endpointIds: must list at least one"));
        assert!(e(|r| r.endpoint_ids = Some(vec![1, -2])).contains("-2 is not a positive id"));
        assert!(e(|r| r.group_ids = Some(vec![0])).contains("groupIds: 0 is not a positive id"));
        assert!(e(|r| r.group_ids = Some(vec![4, 4])).contains("4 is listed twice"));
        assert!(e(|r| r.endpoint_ids = Some((1..=MAX_IDS as i64 + 1).collect())).contains("at most"));
    }
}
