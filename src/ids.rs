//! Identifiers in request paths. A leaf, so that the API and the Docker
//! proxy (which may not import each other) read ids the same way.

use crate::error::{ApiError, ApiResult};

/// An identifier in a path, in its one canonical spelling: decimal digits
/// without sign, leading zeros or spaces, within `u64`. `01`, `+1` and `1.0`
/// are refused rather than read as 1, so that every layer (access checks,
/// logs, metrics labels, a proxy in front) agrees on which object a path
/// names.
pub fn parse_id(raw: &str, thing: &str) -> ApiResult<u64> {
    let bad = |why: String| ApiError::bad_request(format!("Invalid {thing} identifier route variable"), why);
    let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
    if !digits || (raw.len() > 1 && raw.starts_with('0')) {
        return Err(bad(format!(
            "{raw:?} is not an identifier: expected decimal digits without sign, leading zeros or spaces"
        )));
    }
    raw.parse::<u64>().map_err(|e| bad(format!("{e}: {raw:?}")))
}
