//! The one JSON document a fan-out call answers, written as the hosts
//! answer:
//!
//! ```text
//! {"items":[<item>,<item>,...],"errors":[{"endpointId":3,"endpointName":"edge","reason":"timeout","message":"...","details":"..."}]}
//! ```
//!
//! Each item is Docker's own object, byte for byte, with one key added in
//! front: `"BerthEndpoint":{"Id":<id>,"Name":"<name>"}` (a key of Berth's
//! own, so that it never meets the `Portainer` key the proxy's decoration
//! adds). Items are written one host at a time, as each host's answer is
//! complete; `errors` comes last, once every host is done.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::body::BoxError;
use crate::store::model::Id;

/// How a route's answer holds its items.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A JSON array of objects (`/containers/json`, ...).
    List,
    /// `{"Volumes":[...],"Warnings":[...]}`: the volumes are the items.
    Volumes,
    /// One object (`/info`, `/version`): it is the host's one item.
    Object,
}

#[derive(Deserialize)]
struct VolumeList<'a> {
    #[serde(borrow, rename = "Volumes")]
    volumes: Option<Vec<&'a RawValue>>,
}

/// One host's answer as labelled items joined by commas (empty when the
/// host has none). The answer is parsed once, borrowing: the memory is the
/// answer, a slice per item and the copy written out.
pub fn label_items(shape: Shape, answer: &[u8], id: Id, name: &str) -> Result<Vec<u8>, String> {
    let bad = |e: serde_json::Error| format!("the Docker host's answer is not what this route returns: {e}");
    let items: Vec<&RawValue> = match shape {
        Shape::List => serde_json::from_slice(answer).map_err(bad)?,
        Shape::Volumes => serde_json::from_slice::<VolumeList<'_>>(answer).map_err(bad)?.volumes.unwrap_or_default(),
        Shape::Object => vec![serde_json::from_slice(answer).map_err(bad)?],
    };
    let label = serde_json::json!({ "Id": id, "Name": name }).to_string();
    let mut out = Vec::with_capacity(answer.len() + items.len() * (label.len() + 20));
    for (i, item) in items.iter().enumerate() {
        let Some(body) = item.get().strip_prefix('{') else {
            return Err("the Docker host's answer holds an item that is not a JSON object".into());
        };
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"BerthEndpoint\":");
        out.extend_from_slice(label.as_bytes());
        if !body.trim_start().starts_with('}') {
            out.push(b',');
        }
        out.extend_from_slice(body.as_bytes());
    }
    Ok(out)
}

/// An endpoint the call could not list, and why.
#[derive(Serialize, Debug, Clone, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = FanoutFailure)]
pub struct Failure {
    pub endpoint_id: Id,
    pub endpoint_name: String,
    /// A fixed word (the metric label): `timeout`, `unreachable`,
    /// `circuit_open`, `status`, `denied`, `too_large`, `invalid`, ...
    pub reason: &'static str,
    /// The HTTP status of the answer, when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub message: String,
    pub details: String,
}

/// The document as the API document describes it: [`HEAD`], the items
/// and [`tail`] write it (streamed, so not from this type).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
#[schema(as = FanoutDocument)]
pub struct Document {
    /// Docker's own objects, each with `BerthEndpoint: {"Id", "Name"}`
    /// added in front.
    #[schema(value_type = Vec<Object>)]
    items: Vec<()>,
    errors: Vec<Failure>,
}

/// The document's opening.
pub const HEAD: &[u8] = b"{\"items\":[";

/// The document's end: the failures, then the closing brackets.
pub fn tail(failures: &[Failure]) -> Bytes {
    let errors = serde_json::to_string(failures).unwrap_or_else(|_| "[]".into());
    Bytes::from(format!("],\"errors\":{errors}}}"))
}

/// The response body: chunks of the document as the call's task writes
/// them. The channel holds one chunk, so a slow client slows the task
/// down instead of piling chunks up in memory; a client that goes away
/// drops the receiver and the task stops at its next write.
pub struct ChannelBody(pub mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().0.poll_recv(cx).map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn items(shape: Shape, answer: &str) -> Vec<Value> {
        let out = label_items(shape, answer.as_bytes(), 7, "ed\"ge").unwrap();
        let doc = format!("[{}]", String::from_utf8(out).unwrap());
        serde_json::from_str::<Vec<Value>>(&doc).unwrap()
    }

    #[test]
    fn each_item_is_labelled_and_otherwise_docker_own() {
        let v = items(Shape::List, r#"[{"Id":"a","Names":["/x"]}, {} ,{"Id":"b","Portainer":{"ResourceControl":{}}}]"#);
        let label = json!({"Id": 7, "Name": "ed\"ge"});
        assert_eq!(v.len(), 3);
        assert_eq!(v[0], json!({"BerthEndpoint": label, "Id": "a", "Names": ["/x"]}));
        assert_eq!(v[1], json!({"BerthEndpoint": label}));
        assert_eq!(v[2]["Portainer"], json!({"ResourceControl": {}}));
        assert!(items(Shape::List, "[]").is_empty());
    }

    #[test]
    fn volumes_are_flattened_and_objects_are_one_item() {
        let v = items(Shape::Volumes, r#"{"Volumes":[{"Name":"v1"},{"Name":"v2"}],"Warnings":null}"#);
        assert_eq!(v.iter().map(|i| i["Name"].as_str().unwrap()).collect::<Vec<_>>(), ["v1", "v2"]);
        assert!(items(Shape::Volumes, r#"{"Volumes":null}"#).is_empty());
        let v = items(Shape::Object, r#"{"ID":"engine","Containers":3}"#);
        assert_eq!(v, vec![json!({"BerthEndpoint": {"Id": 7, "Name": "ed\"ge"}, "ID": "engine", "Containers": 3})]);
    }

    #[test]
    fn answers_of_another_shape_are_errors() {
        for (shape, answer) in [
            (Shape::List, r#"{"message":"x"}"#),
            (Shape::List, "[1,2]"),
            (Shape::List, "[{}"),
            (Shape::Object, "[]"),
            (Shape::Volumes, "[]"),
        ] {
            assert!(label_items(shape, answer.as_bytes(), 1, "a").is_err(), "{answer}");
        }
    }

    #[test]
    fn the_document_closes_with_its_errors() {
        let f = Failure {
            endpoint_id: 2,
            endpoint_name: "dead".into(),
            reason: "unreachable",
            status: Some(502),
            message: "m".into(),
            details: "d".into(),
        };
        let mut doc = HEAD.to_vec();
        doc.extend_from_slice(&tail(std::slice::from_ref(&f)));
        let v: Value = serde_json::from_slice(&doc).unwrap();
        assert_eq!(
            v,
            json!({"items": [], "errors": [{"endpointId": 2, "endpointName": "dead", "reason": "unreachable", "status": 502, "message": "m", "details": "d"}]})
        );
    }
}
