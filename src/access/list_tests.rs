use super::*;
use crate::access::control::tests::Names;
use crate::store::model::{ResourceControl, RESOURCE_CONTROL_CONTAINER, RESOURCE_CONTROL_VOLUME};
use serde_json::json;

const ALICE: Caller = Caller { user_id: 2, teams: &[], admin: false };
const ADMIN: Caller = Caller { user_id: 1, teams: &[], admin: true };
const SCOPE: Scope = Scope { endpoint_id: 1, docker_id: "eng" };

fn rcs() -> Vec<ResourceControl> {
    vec![
        ResourceControl::private(1, "mine", RESOURCE_CONTROL_CONTAINER, 2),
        ResourceControl::private(2, "theirs", RESOURCE_CONTROL_CONTAINER, 3),
        ResourceControl::private(3, "v1_eng", RESOURCE_CONTROL_VOLUME, 2),
    ]
}

fn rewrite(shape: Shape, kind: ResourceKind, caller: Caller, input: &[u8], chunk: usize) -> Result<Value, ListError> {
    let controls = rcs();
    let mut rw = ListRewriter::new(shape, 4096);
    let mut out = Vec::new();
    let mut keep = |v: &mut Value| filter_item(kind, v, &caller, &SCOPE, &controls, &Names).keep;
    for c in input.chunks(chunk) {
        out.extend(rw.push(c, &mut keep)?);
    }
    rw.finish()?;
    if shape == Shape::Stream {
        let items: Vec<Value> =
            out.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(|l| serde_json::from_slice(l).unwrap()).collect();
        return Ok(Value::Array(items));
    }
    Ok(serde_json::from_slice(&out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out))))
}

#[test]
fn container_lists_keep_only_visible_items_decorated() {
    let input = json!([
        {"Id": "mine", "Names": ["/a"], "Labels": {"x": "a \"quoted\" ] } , value"}},
        {"Id": "theirs", "Names": ["/b"], "Labels": {}},
        {"Id": "nobody", "Labels": {}},
        {"Id": "shared", "Labels": {"io.portainer.accesscontrol.public": ""}}
    ]);
    let bytes = serde_json::to_vec_pretty(&input).unwrap();
    for chunk in [1, 3, 7, 1000] {
        let out = rewrite(Shape::Array, ResourceKind::Container, ALICE, &bytes, chunk).unwrap();
        let ids: Vec<&str> = out.as_array().unwrap().iter().map(|i| i["Id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["mine", "shared"], "chunk {chunk}");
        assert_eq!(out[0]["Portainer"]["ResourceControl"]["Id"], 1);
        assert_eq!(out[0]["Labels"]["x"], "a \"quoted\" ] } , value");
        assert_eq!(out[1]["Portainer"]["ResourceControl"]["Public"], true);
    }
    let all = rewrite(Shape::Array, ResourceKind::Container, ADMIN, &bytes, 5).unwrap();
    assert_eq!(all.as_array().unwrap().len(), 4, "admins keep everything");
    assert_eq!(all[1]["Portainer"]["ResourceControl"]["Id"], 2, "and see the decoration");
    assert!(all[2].get("Portainer").is_none(), "no control, no decoration");
    assert_eq!(rewrite(Shape::Array, ResourceKind::Container, ALICE, b" [ ] ", 1).unwrap(), json!([]));
}

#[test]
fn labelled_items_return_a_control_to_store() {
    let controls = rcs();
    let mut item = json!({"Id": "shared", "Labels": {"io.portainer.accesscontrol.users": "alice"}});
    let out = filter_item(ResourceKind::Container, &mut item, &ALICE, &SCOPE, &controls, &Names);
    assert!(out.keep);
    let rc = out.store.expect("a control to store");
    assert_eq!(rc.resource_id, "shared");
    let mut stored = json!({"Id": "mine", "Labels": {}});
    assert_eq!(filter_item(ResourceKind::Container, &mut stored, &ALICE, &SCOPE, &controls, &Names).store, None);
}

#[test]
fn volume_lists_filter_the_field_and_copy_the_rest() {
    let input = br#"{"Volumes": [{"Name": "v1", "Labels": null}, {"Name": "v2", "Labels": {}}], "Warnings": ["w ]"]}"#;
    for chunk in [1, 4, 100] {
        let out = rewrite(Shape::Field("Volumes"), ResourceKind::Volume, ALICE, input, chunk).unwrap();
        assert_eq!(out["Volumes"].as_array().unwrap().len(), 1, "{out}");
        assert_eq!(out["Volumes"][0]["ResourceID"], "v1_eng");
        assert_eq!(out["Volumes"][0]["Portainer"]["ResourceControl"]["Id"], 3);
        assert_eq!(out["Warnings"], json!(["w ]"]));
    }
    let out = rewrite(Shape::Field("Volumes"), ResourceKind::Volume, ALICE, br#"{"Volumes":null,"Warnings":null}"#, 2)
        .unwrap();
    assert_eq!(out, json!({"Volumes": null, "Warnings": null}));
    let out =
        rewrite(Shape::Field("Volumes"), ResourceKind::Volume, ALICE, br#"{"Warnings":[],"Volumes":[]}"#, 2).unwrap();
    assert_eq!(out, json!({"Warnings": [], "Volumes": []}));
}

#[test]
fn events_are_filtered_by_their_actor() {
    let input = concat!(
        r#"{"Type":"container","Action":"start","Actor":{"ID":"mine","Attributes":{"name":"a"}}}"#,
        "\n",
        r#"{"Type":"container","Action":"start","Actor":{"ID":"theirs","Attributes":{"name":"b"}}}"#,
        "\n",
        r#"{"Type":"image","Action":"pull","Actor":{"ID":"busybox"}}"#,
        "\n",
        r#"{"Type":"plugin","Action":"enable","Actor":{"ID":"p"}}"#,
        "\n"
    );
    let out = rewrite(Shape::Stream, ResourceKind::Event, ALICE, input.as_bytes(), 9).unwrap();
    let ids: Vec<&str> = out.as_array().unwrap().iter().map(|e| e["Actor"]["ID"].as_str().unwrap()).collect();
    assert_eq!(ids, ["mine", "busybox"]);
    assert!(out[0].get("Portainer").is_none(), "events are not decorated");
}

#[test]
fn malformed_and_oversized_answers_stop_the_rewrite() {
    let controls = rcs();
    let mut keep = |v: &mut Value| filter_item(ResourceKind::Container, v, &ALICE, &SCOPE, &controls, &Names).keep;
    let mut rw = ListRewriter::new(Shape::Array, 64);
    let big = format!(r#"[{{"Id":"mine","Labels":{{"x":"{}"}}}}]"#, "a".repeat(100));
    assert_eq!(rw.push(big.as_bytes(), &mut keep), Err(ListError::ItemTooLarge));
    for bad in [&b"{}"[..], b"[1]", b"[{\"Id\":\"mine\"}] x", b"[{\"Id\":}]"] {
        let mut rw = ListRewriter::new(Shape::Array, 4096);
        assert!(rw.push(bad, &mut keep).is_err(), "{}", String::from_utf8_lossy(bad));
    }
    let mut rw = ListRewriter::new(Shape::Array, 4096);
    rw.push(b"[{\"Id\":\"mine\"}", &mut keep).unwrap();
    assert!(rw.finish().is_err(), "a truncated answer is an error");
}

#[test]
fn ten_thousand_items_stream_in_bounded_memory() {
    let controls = rcs();
    let mut keep = |v: &mut Value| filter_item(ResourceKind::Container, v, &ALICE, &SCOPE, &controls, &Names).keep;
    let mut rw = ListRewriter::new(Shape::Array, 1024);
    let mut kept = 0usize;
    let mut out = rw.push(b"[", &mut keep).unwrap();
    for i in 0..10_000 {
        let id = if i % 100 == 0 { "mine" } else { "theirs" };
        let item =
            format!("{}{{\"Id\":\"{id}\",\"Names\":[\"/c{i}\"],\"Labels\":{{}}}}", if i == 0 { "" } else { "," });
        out.extend(rw.push(item.as_bytes(), &mut keep).unwrap());
        assert!(rw.item.capacity() <= 1024, "the buffer holds one item");
    }
    out.extend(rw.push(b"]", &mut keep).unwrap());
    rw.finish().unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    kept += v.as_array().unwrap().len();
    assert_eq!(kept, 100);
}
