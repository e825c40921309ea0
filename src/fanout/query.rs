//! A fan-out call's query string: Berth's own parameters (`endpointIds[]`,
//! `groupIds[]`, `tagIds[]`), read strictly, and the rest, passed to every
//! Docker host byte for byte.

use crate::error::ApiError;
use crate::store::model::Id;

/// Which endpoints a call asks, narrowed from all those the caller may use.
/// An empty list does not narrow.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Select {
    /// The endpoint is one of these.
    pub endpoint_ids: Vec<Id>,
    /// The endpoint is in one of these groups.
    pub group_ids: Vec<Id>,
    /// The endpoint (with its group's tags) carries every one of these, as
    /// `GET /api/endpoints?tagIds[]=...` reads them.
    pub tag_ids: Vec<Id>,
}

impl Select {
    /// Whether an endpoint in group `group` with tags `tags` (its own and
    /// its group's) is selected.
    pub fn matches(&self, id: Id, group: Id, tags: impl Fn() -> Vec<Id>) -> bool {
        let listed = |set: &[Id], v: Id| set.is_empty() || set.contains(&v);
        if !listed(&self.endpoint_ids, id) || !listed(&self.group_ids, group) {
            return false;
        }
        if self.tag_ids.is_empty() {
            return true;
        }
        let tags = tags();
        self.tag_ids.iter().all(|t| tags.contains(t))
    }
}

/// The query split in two.
#[derive(Debug, PartialEq, Eq)]
pub struct Split {
    /// What every host gets (empty: no query at all), as the client wrote it.
    pub forward: String,
    pub select: Select,
}

/// Splits a fan-out call's query. Berth's parameters are recognised by
/// their decoded name, so `endpointIds%5B%5D` is one too, and with or
/// without the brackets: a parameter meant for Berth must never reach
/// Docker unread. A `token` parameter (a Berth credential) is dropped, as
/// the Docker proxy drops it. Values are decimal ids, one per parameter;
/// anything else is a 400.
pub fn split(query: Option<&str>) -> Result<Split, ApiError> {
    let mut select = Select::default();
    let mut kept: Vec<&str> = Vec::new();
    for piece in query.unwrap_or("").split('&') {
        let (name, value) = decode(piece);
        let list = match name.as_str() {
            "endpointIds[]" | "endpointIds" => &mut select.endpoint_ids,
            "groupIds[]" | "groupIds" => &mut select.group_ids,
            "tagIds[]" | "tagIds" => &mut select.tag_ids,
            "token" => continue,
            _ => {
                kept.push(piece);
                continue;
            }
        };
        list.push(id(&name, &value)?);
    }
    // A query of only empty pieces forwards nothing rather than a bare `&`.
    let forward = if kept.iter().all(|p| p.is_empty()) { String::new() } else { kept.join("&") };
    Ok(Split { forward, select })
}

/// One `name=value` piece, decoded as a form (`+` is a space).
fn decode(piece: &str) -> (String, String) {
    serde_urlencoded::from_str::<Vec<(String, String)>>(piece)
        .ok()
        .and_then(|mut v| v.pop())
        .unwrap_or_else(|| (piece.to_owned(), String::new()))
}

fn id(name: &str, value: &str) -> Result<Id, ApiError> {
    let parsed =
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) { value.parse::<Id>().ok() } else { None };
    match parsed {
        Some(id) if id > 0 => Ok(id),
        _ => Err(ApiError::bad_request(
            "Invalid query parameter",
            format!("{name}: {value:?} is not an id (a positive decimal number, one per parameter)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> Split {
        split(Some(q)).unwrap_or_else(|e| panic!("{q}: {}", e.details))
    }

    #[test]
    fn docker_parameters_pass_byte_for_byte() {
        let q = "all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D&x";
        assert_eq!(ok(q).forward, q);
        assert_eq!(ok(q).select, Select::default());
        assert_eq!(split(None).unwrap().forward, "");
    }

    #[test]
    fn berth_parameters_are_taken_out_in_any_spelling() {
        let s = ok("all=1&endpointIds[]=3&endpointIds%5B%5D=4&groupIds=2&tagIds[]=7&token=abc&size=true");
        assert_eq!(s.forward, "all=1&size=true");
        assert_eq!(s.select, Select { endpoint_ids: vec![3, 4], group_ids: vec![2], tag_ids: vec![7] });
        assert_eq!(ok("endpointIds[]=1").forward, "");
    }

    #[test]
    fn bad_ids_are_refused() {
        for q in [
            "endpointIds[]=abc",
            "endpointIds[]=",
            "endpointIds[]=0",
            "endpointIds[]=-1",
            "endpointIds[]=+1",
            "groupIds[]=1,2",
            "tagIds[]=%201",
            "endpointIds[]=99999999999999999999999",
        ] {
            let e = split(Some(q)).expect_err(q);
            assert_eq!(e.status(), http::StatusCode::BAD_REQUEST, "{q}");
        }
    }

    #[test]
    fn selection_narrows_by_id_group_and_every_tag() {
        let s = Select { endpoint_ids: vec![1, 2], group_ids: vec![5], tag_ids: vec![7, 8] };
        assert!(s.matches(1, 5, || vec![7, 8, 9]));
        assert!(!s.matches(3, 5, || vec![7, 8]));
        assert!(!s.matches(1, 6, || vec![7, 8]));
        assert!(!s.matches(1, 5, || vec![7]));
        assert!(Select::default().matches(42, 1, Vec::new));
    }
}
