use super::*;

fn grants(public: bool, admins: bool, users: &[Id], teams: &[Id]) -> Grants {
    Grants {
        public: Some(public),
        administratorsonly: Some(admins),
        users: Some(users.to_vec()),
        teams: Some(teams.to_vec()),
    }
}

fn check(g: Grants) -> ApiResult<Access> {
    // Users 1..=5 and teams 10..=12 exist.
    Access::check(g, |u| (1..=5).contains(&u), |t| (10..=12).contains(&t))
}

fn access(public: bool, admins: bool, users: &[Id], teams: &[Id]) -> Access {
    Access { public, administrators_only: admins, users: users.to_vec(), teams: teams.to_vec() }
}

#[test]
fn grants_follow_portainers_rules_and_name_only_existing_users_and_teams() {
    let err = |g| check(g).unwrap_err().details;
    assert!(err(grants(false, false, &[], &[])).contains("must specify Users, Teams, Public or AdministratorsOnly"));
    assert!(err(Grants::default()).contains("must specify"), "null and missing are empty, as in Go");
    assert!(err(grants(true, true, &[], &[])).contains("cannot set both Public and AdministratorsOnly"));
    assert!(err(grants(false, false, &[2, 9], &[])).contains("no user with id 9"));
    assert!(err(grants(false, false, &[], &[10, 99])).contains("no team with id 99"));
    let many: Vec<Id> = (0..=MAX_ENTRIES as u64).collect();
    assert!(err(grants(false, false, &many, &[])).contains("at most"));
    for e in [err(grants(false, false, &[], &[])), err(grants(false, false, &[9], &[]))] {
        assert!(e.starts_with("Invalid payload: "), "{e}");
    }

    let a = check(grants(false, false, &[2, 3, 2], &[11, 11])).unwrap();
    assert_eq!(a, access(false, false, &[2, 3], &[11]), "repeated ids are kept once");
    assert_eq!(check(grants(true, false, &[], &[])).unwrap(), access(true, false, &[], &[]));
    assert_eq!(check(grants(false, true, &[], &[])).unwrap(), access(false, true, &[], &[]));
}

#[test]
fn a_standard_user_may_set_public_self_only_or_own_teams_and_nothing_else() {
    let me = 2;
    let my_teams = [10, 11];
    let may = |a: Access| standard_user_may_set(&a, me, &my_teams);
    assert!(may(access(true, false, &[], &[])).is_ok(), "public");
    assert!(may(access(true, false, &[3], &[12])).is_ok(), "public wins over lists");
    assert!(may(access(false, false, &[me], &[])).is_ok(), "private to the caller");
    assert!(may(access(false, false, &[], &[10])).is_ok(), "one of the caller's teams");
    assert!(may(access(false, false, &[], &[12, 11])).is_ok(), "teams, one of them the caller's");

    assert!(may(access(false, true, &[], &[])).is_err(), "administrators only");
    assert!(may(access(false, true, &[me], &[])).is_err(), "administrators only, with the caller");
    assert!(may(access(false, false, &[3], &[])).is_err(), "handing it to another user");
    assert!(may(access(false, false, &[me, 3], &[])).is_err(), "adding another user");
    assert!(may(access(false, false, &[me], &[10])).is_err(), "user and team together");
    assert!(may(access(false, false, &[], &[12])).is_err(), "only a team the caller is not in");
    assert!(standard_user_may_set(&access(false, false, &[], &[10]), me, &[]).is_err(), "no teams at all");
}

#[test]
fn applying_grants_replaces_every_access_and_keeps_what_the_control_governs() {
    let mut rc = ResourceControl::private(7, "abc", RESOURCE_CONTROL_CONTAINER, 2);
    rc.sub_resource_ids = vec!["sub".into()];
    rc.administrators_only = true;
    access(false, false, &[3], &[10, 11]).apply(&mut rc);
    assert_eq!((rc.id, rc.resource_id.as_str(), rc.kind), (7, "abc", RESOURCE_CONTROL_CONTAINER));
    assert_eq!(rc.sub_resource_ids, vec!["sub".to_string()]);
    assert!(!rc.administrators_only && !rc.public);
    assert_eq!(rc.user_accesses, vec![UserAccess { user_id: 3, access_level: 1 }]);
    assert_eq!(rc.team_accesses.iter().map(|t| (t.team_id, t.access_level)).collect::<Vec<_>>(), [(10, 1), (11, 1)]);
}

#[test]
fn resource_ids_are_bounded_and_printable() {
    assert!(check_resource_id("x", "").is_err());
    assert!(check_resource_id("x", &"a".repeat(MAX_RESOURCE_ID + 1)).is_err());
    assert!(check_resource_id("x", "abc\ndef").is_err());
    assert!(check_resource_id("x", &"a".repeat(MAX_RESOURCE_ID)).is_ok());
    assert!(check_resource_id("x", "1_my-stack").is_ok());
}

#[test]
fn bodies_decode_with_portainers_names_in_any_case() {
    let b: CreateBody = crate::api::decode_json(
        br#"{"resourceID":"abc","Type":3,"public":null,"Users":[1],"TEAMS":null,"SubResourceIDs":["s"]}"#,
    )
    .unwrap();
    assert_eq!((b.resourceid.as_deref(), b.kind), (Some("abc"), Some(3)));
    assert_eq!(b.subresourceids, Some(vec!["s".to_string()]));
    assert_eq!((b.grants.public, b.grants.users, b.grants.teams), (None, Some(vec![1]), None));
    assert!(crate::api::decode_json::<CreateBody>(br#"{"ResourceID":"a","Type":300}"#).is_err());
    assert!(crate::api::decode_json::<Grants>(br#"{"Public":true,"public":false}"#).is_err());
}
