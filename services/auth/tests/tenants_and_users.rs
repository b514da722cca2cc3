//! Tenant and user RPCs and per-tenant, per-user isolation, on SQLite and
//! PostgreSQL (as the app role): owners manage tenants, admins their tenant's
//! users, operators see themselves; with two tenants of two users each, no
//! caller reads, changes, lists or counts another's objects, and every error
//! about a foreign object is the one about a missing object.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_proto::auth::{
    ApprovePairingRequest, CreateApiKeyRequest, CreateTenantRequest, GetTenantRequest,
    ListUsersRequest, PutUserRequest, RejectPairingRequest, RemoveDeviceRequest, RemoveUserRequest,
    RequestPairingRequest, RevokeApiKeyRequest, RevokeDeviceTokenRequest, RotateDeviceTokenRequest,
    UpdateTenantRequest,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};
use support::{
    ConnectOptions, Harness, TestDevice, admin, approve, assert_code, member, owner, pending_of,
    principal, strings,
};

behaviour_suite!(
    tenant_rpcs_follow_the_access_rules,
    user_rpcs_follow_the_access_rules,
    no_cross_tenant_or_cross_user_leaks,
    concurrent_writers_all_succeed,
);

/// Both calls failed the same way: same code, message and details.
fn same_error<A: std::fmt::Debug, B: std::fmt::Debug>(
    foreign: Result<A, ServiceError>,
    missing: Result<B, ServiceError>,
) {
    let foreign = foreign.expect_err("a foreign object must not be reachable");
    let missing = missing.expect_err("a missing object must not be reachable");
    assert_eq!(
        (foreign.code, &foreign.message, &foreign.details),
        (missing.code, &missing.message, &missing.details)
    );
}

fn tenant(id: &str, slug: &str) -> CreateTenantRequest {
    CreateTenantRequest {
        id: id.into(),
        slug: slug.into(),
        name: String::new(),
    }
}

fn get(id: &str) -> GetTenantRequest {
    GetTenantRequest {
        tenant_id: id.into(),
    }
}

fn put(tenant: &str, user: &str, role: &str) -> PutUserRequest {
    PutUserRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
        role: role.into(),
        display_name: format!("User {user}"),
    }
}

fn list_in(tenant: &str) -> ListUsersRequest {
    ListUsersRequest {
        tenant_id: tenant.into(),
    }
}

async fn user_ids(h: &Harness, caller: &Principal, tenant: &str) -> Vec<String> {
    h.api()
        .list_users(caller, list_in(tenant))
        .await
        .unwrap()
        .users
        .into_iter()
        .map(|u| u.user_id)
        .collect()
}

async fn tenant_rpcs_follow_the_access_rules(h: &Harness) {
    let api = h.api();
    let root = owner("default");
    let acme = api.create_tenant(&root, tenant("acme", "")).await.unwrap();
    assert_eq!(
        (
            acme.id.as_str(),
            acme.slug.as_str(),
            acme.name.as_str(),
            acme.status.as_str()
        ),
        ("acme", "acme", "acme", "active")
    );
    let generated = api.create_tenant(&root, tenant("", "gen")).await.unwrap();
    assert_eq!(generated.id.len(), 36, "a UUID");
    for clash in [
        tenant("acme", "other"),
        tenant("x1", "gen"),
        tenant("x2", "acme"),
    ] {
        assert_code(
            api.create_tenant(&root, clash).await,
            ErrorCode::AlreadyExists,
        );
    }
    assert_code(
        api.create_tenant(&root, tenant("x3", "Bad Slug")).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        api.create_tenant(&root, tenant("-x", "")).await,
        ErrorCode::InvalidRequest,
    );
    for caller in [
        admin("default"),
        member("acme", "ada", "admin"),
        member("acme", "o", "operator"),
    ] {
        assert_code(
            api.create_tenant(&caller, tenant("x4", "")).await,
            ErrorCode::Forbidden,
        );
        assert_code(
            api.update_tenant(
                &caller,
                UpdateTenantRequest {
                    tenant_id: "acme".into(),
                    name: Some("mine".into()),
                    status: None,
                },
            )
            .await,
            ErrorCode::Forbidden,
        );
    }

    // Get: the owner any tenant (by id or slug), everyone else its own only.
    assert_eq!(
        api.get_tenant(&root, get("gen")).await.unwrap().id,
        generated.id
    );
    assert_eq!(api.get_tenant(&root, get("")).await.unwrap().id, "default");
    for caller in [
        member("acme", "ada", "admin"),
        member("acme", "o", "operator"),
    ] {
        assert_eq!(api.get_tenant(&caller, get("")).await.unwrap().id, "acme");
        assert_eq!(
            api.get_tenant(&caller, get("acme")).await.unwrap().id,
            "acme"
        );
        let foreign = api.get_tenant(&caller, get("default")).await;
        let missing = api.get_tenant(&caller, get("nowhere")).await;
        assert_eq!(
            assert_code(
                api.get_tenant(&caller, get("gen")).await,
                ErrorCode::NotFound
            )
            .message,
            "unknown tenant"
        );
        same_error(foreign, missing);
        let listed = api.list_tenants(&caller, Default::default()).await.unwrap();
        assert_eq!(
            listed
                .tenants
                .iter()
                .map(|t| t.id.as_str())
                .collect::<Vec<_>>(),
            ["acme"]
        );
    }
    let all = api.list_tenants(&root, Default::default()).await.unwrap();
    let mut ids: Vec<&str> = all.tenants.iter().map(|t| t.id.as_str()).collect();
    ids.sort_unstable();
    let mut expected = vec!["acme", "default", generated.id.as_str()];
    expected.sort_unstable();
    assert_eq!(ids, expected);

    // Update: name and status; bad status, unknown tenant.
    let renamed = api
        .update_tenant(
            &root,
            UpdateTenantRequest {
                tenant_id: "acme".into(),
                name: Some("Acme Inc.".into()),
                status: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (renamed.name.as_str(), renamed.status.as_str()),
        ("Acme Inc.", "active")
    );
    let bad_status = UpdateTenantRequest {
        tenant_id: "acme".into(),
        name: None,
        status: Some("frozen".into()),
    };
    assert_code(
        api.update_tenant(&root, bad_status).await,
        ErrorCode::InvalidRequest,
    );
    let unknown = UpdateTenantRequest {
        tenant_id: "nowhere".into(),
        name: Some("x".into()),
        status: None,
    };
    assert_code(api.update_tenant(&root, unknown).await, ErrorCode::NotFound);
}

async fn user_rpcs_follow_the_access_rules(h: &Harness) {
    let api = h.api();
    h.create_tenant("acme").await;
    h.create_tenant("bolt").await;
    let root = owner("default");
    let acme_admin = admin("acme");
    let bolt_admin = admin("bolt");
    // An admin puts users into its own tenant (empty tenant = its own).
    let a1 = api
        .put_user(&acme_admin, put("", "a1", "operator"))
        .await
        .unwrap();
    assert_eq!(
        (a1.tenant_id.as_str(), a1.user_id.as_str(), a1.role.as_str()),
        ("acme", "a1", "operator")
    );
    api.put_user(&acme_admin, put("acme", "a2", "viewer"))
        .await
        .unwrap();
    // Another tenant is unknown to an admin, exactly like a missing one; the owner may.
    same_error(
        api.put_user(&acme_admin, put("bolt", "x", "operator"))
            .await,
        api.put_user(&acme_admin, put("nowhere", "x", "operator"))
            .await,
    );
    api.put_user(&root, put("bolt", "b1", "operator"))
        .await
        .unwrap();
    api.put_user(&bolt_admin, put("", "b2", "admin"))
        .await
        .unwrap();
    // Operators manage nobody; roles and ids are checked.
    let a1_caller = member("acme", "a1", "operator");
    assert_code(
        api.put_user(&a1_caller, put("", "a3", "operator")).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        api.remove_user(
            &a1_caller,
            RemoveUserRequest {
                tenant_id: String::new(),
                user_id: "a2".into(),
            },
        )
        .await,
        ErrorCode::Forbidden,
    );
    for bad in [
        put("", "a3", "owner"),
        put("", "", "operator"),
        put("", "a\tb", "admin"),
    ] {
        assert_code(
            api.put_user(&acme_admin, bad).await,
            ErrorCode::InvalidRequest,
        );
    }
    // Updating changes the role.
    let promoted = api
        .put_user(&acme_admin, put("", "a2", "operator"))
        .await
        .unwrap();
    assert_eq!(promoted.role, "operator");

    // Listing: admins see their tenant, operators themselves, owners any tenant.
    assert_eq!(user_ids(h, &acme_admin, "").await, ["a1", "a2"]);
    assert_eq!(user_ids(h, &bolt_admin, "").await, ["b1", "b2"]);
    assert_eq!(user_ids(h, &a1_caller, "").await, ["a1"]);
    assert_eq!(user_ids(h, &root, "bolt").await, ["b1", "b2"]);
    same_error(
        api.list_users(&a1_caller, list_in("bolt")).await,
        api.list_users(&a1_caller, list_in("nowhere")).await,
    );
    same_error(
        api.list_users(&acme_admin, list_in("bolt")).await,
        api.list_users(&acme_admin, list_in("nowhere")).await,
    );

    // Removing: another tenant's user is unknown, like a user who never was.
    let remove = |tenant: &str, user: &str| RemoveUserRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
    };
    same_error(
        api.remove_user(&acme_admin, remove("", "b1")).await,
        api.remove_user(&acme_admin, remove("", "ghost")).await,
    );
    same_error(
        api.remove_user(&acme_admin, remove("bolt", "b1")).await,
        api.remove_user(&acme_admin, remove("nowhere", "b1")).await,
    );
    assert_eq!(user_ids(h, &bolt_admin, "").await, ["b1", "b2"]);
    let removed = api.remove_user(&root, remove("bolt", "b1")).await.unwrap();
    assert_eq!(
        (removed.tenant_id.as_str(), removed.user_id.as_str()),
        ("bolt", "b1")
    );
    assert_eq!(user_ids(h, &bolt_admin, "").await, ["b2"]);
    assert_eq!(user_ids(h, &acme_admin, "").await, ["a1", "a2"]);
}

/// What one user of one tenant owns.
struct Owned {
    caller: Principal,
    device: TestDevice,
    request_id: String,
    pending_device: TestDevice,
    code: String,
    key_id: String,
}

async fn populate(h: &Harness, tenant: &str, user: &str, seed: u8) -> Owned {
    let api = h.api();
    let key = api
        .create_api_key(
            &admin(tenant),
            CreateApiKeyRequest {
                name: user.into(),
                scopes: strings(&["operator.read", "operator.write"]),
                owner_id: user.into(),
                expires_at_ms: 0,
            },
        )
        .await
        .unwrap();
    let with_key = ConnectOptions {
        token: Some(key.secret.clone()),
        ..ConnectOptions::default()
    };
    let device = TestDevice::new(seed);
    let request_id =
        pending_of(&h.connect(device.request(h.now(), &with_key)).await.unwrap()).request_id;
    api.approve_pairing(&admin(tenant), approve(&request_id))
        .await
        .unwrap();
    h.connect(device.request(h.now(), &with_key)).await.unwrap();
    let pending_device = TestDevice::new(seed + 1);
    let request_id = pending_of(
        &h.connect(pending_device.request(h.now(), &with_key))
            .await
            .unwrap(),
    )
    .request_id;
    let caller = principal(
        tenant,
        user,
        &[
            "operator.read",
            "operator.write",
            "operator.pairing",
            "operator.approvals",
        ],
        "",
    );
    let code = api
        .request_pairing(
            &caller,
            RequestPairingRequest {
                sender_id: format!("s-{tenant}-{user}"),
                channel: "telegram".into(),
                chat_id: String::new(),
                account_id: user.into(),
            },
        )
        .await
        .unwrap()
        .pairing_code;
    Owned {
        caller,
        device,
        request_id,
        pending_device,
        code,
        key_id: key.key.unwrap().id,
    }
}

async fn no_cross_tenant_or_cross_user_leaks(h: &Harness) {
    let api = h.api();
    h.create_tenant("acme").await;
    h.create_tenant("bolt").await;
    let all = [
        populate(h, "acme", "u1", 50).await,
        populate(h, "acme", "u2", 52).await,
        populate(h, "bolt", "u1", 54).await,
        populate(h, "bolt", "u2", 56).await,
    ];

    // Each operator lists exactly its own objects; the counts are the same for all.
    for me in &all {
        let list = api
            .list_pairing(&me.caller, Default::default())
            .await
            .unwrap();
        let paired: Vec<&str> = list.paired.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(paired, [me.device.id.as_str()]);
        let mut pending: Vec<&str> = list.pending.iter().map(|r| r.request_id.as_str()).collect();
        pending.retain(|id| *id == me.request_id);
        assert_eq!(pending.len(), 1);
        assert_eq!(list.pending.len(), 2, "its device request and its code");
        assert!(list.pending.iter().all(|r| r.user_id == me.caller.user_id));
        assert!(
            list.pending
                .iter()
                .all(|r| r.tenant_id == me.caller.tenant_id)
        );
    }
    // Each admin lists its tenant's objects only.
    for tenant in ["acme", "bolt"] {
        let list = api
            .list_pairing(&admin(tenant), Default::default())
            .await
            .unwrap();
        assert_eq!((list.paired.len(), list.pending.len()), (2, 4));
        assert!(list.paired.iter().all(|d| d.tenant_id == tenant));
        let keys = api
            .list_api_keys(&admin(tenant), Default::default())
            .await
            .unwrap();
        assert_eq!(keys.keys.len(), 2);
        assert!(keys.keys.iter().all(|k| k.tenant_id == tenant));
    }

    // Every foreign object answers like a missing one, and stays as it was.
    for me in &all {
        for other in all.iter().filter(|o| !std::ptr::eq(*o, me)) {
            same_error(
                api.remove_device(
                    &me.caller,
                    RemoveDeviceRequest {
                        device_id: other.device.id.clone(),
                        ..Default::default()
                    },
                )
                .await,
                api.remove_device(
                    &me.caller,
                    RemoveDeviceRequest {
                        device_id: "0".repeat(64),
                        ..Default::default()
                    },
                )
                .await,
            );
            same_error(
                api.approve_pairing(&me.caller, approve(&other.request_id))
                    .await,
                api.approve_pairing(&me.caller, approve("00000000-0000-7000-8000-000000000000"))
                    .await,
            );
            let reject = |id: &str| RejectPairingRequest {
                request_id: id.into(),
                ..Default::default()
            };
            same_error(
                api.reject_pairing(&me.caller, reject(&other.request_id))
                    .await,
                api.reject_pairing(&me.caller, reject("missing")).await,
            );
            let by_code = |code: &str| ApprovePairingRequest {
                pairing_code: code.into(),
                ..Default::default()
            };
            same_error(
                api.approve_pairing(&me.caller, by_code(&other.code)).await,
                api.approve_pairing(&me.caller, by_code("ZZZZZZZZ")).await,
            );
            let rotate = |id: &str| RotateDeviceTokenRequest {
                device_id: id.into(),
                role: "operator".into(),
                scopes: vec![],
            };
            same_error(
                api.rotate_device_token(&me.caller, rotate(&other.device.id))
                    .await,
                api.rotate_device_token(&me.caller, rotate(&other.pending_device.id))
                    .await,
            );
            let revoke = |id: &str| RevokeDeviceTokenRequest {
                device_id: id.into(),
                role: "operator".into(),
            };
            same_error(
                api.revoke_device_token(&me.caller, revoke(&other.device.id))
                    .await,
                api.revoke_device_token(&me.caller, revoke("missing")).await,
            );
            if other.caller.tenant_id != me.caller.tenant_id {
                let admin = admin(&me.caller.tenant_id);
                same_error(
                    api.revoke_api_key(
                        &admin,
                        RevokeApiKeyRequest {
                            id: other.key_id.clone(),
                        },
                    )
                    .await,
                    api.revoke_api_key(
                        &admin,
                        RevokeApiKeyRequest {
                            id: "missing".into(),
                        },
                    )
                    .await,
                );
                same_error(
                    api.remove_device(
                        &admin,
                        RemoveDeviceRequest {
                            device_id: other.device.id.clone(),
                            ..Default::default()
                        },
                    )
                    .await,
                    api.remove_device(
                        &admin,
                        RemoveDeviceRequest {
                            device_id: "missing".into(),
                            ..Default::default()
                        },
                    )
                    .await,
                );
            }
        }
    }

    // Nothing changed anywhere.
    for tenant in ["acme", "bolt"] {
        let list = api
            .list_pairing(&admin(tenant), Default::default())
            .await
            .unwrap();
        assert_eq!((list.paired.len(), list.pending.len()), (2, 4));
        assert!(
            list.paired
                .iter()
                .all(|d| d.tokens.iter().all(|t| t.revoked_at_ms == 0))
        );
        let keys = api
            .list_api_keys(&admin(tenant), Default::default())
            .await
            .unwrap();
        assert!(keys.keys.iter().all(|k| k.revoked_at_ms == 0));
    }
    for me in &all {
        let p = support::principal_of(
            &h.connect(me.device.request(h.now(), &ConnectOptions::default()))
                .await
                .unwrap(),
        );
        assert_eq!(
            (p.tenant_id.as_str(), p.user_id.as_str()),
            (me.caller.tenant_id.as_str(), me.caller.user_id.as_str())
        );
    }
}

/// Writes that read first (a tenant's clash check, a user's upsert) racing
/// each other all commit: on SQLite none fails to upgrade its read lock to a
/// write lock while another writer commits (which answered UNAVAILABLE).
async fn concurrent_writers_all_succeed(h: &Harness) {
    let api = h.api();
    let root = owner("default");
    let tenants = futures_util::future::join_all(
        (0..12).map(|i| api.create_tenant(&root, tenant(&format!("t{i}"), ""))),
    )
    .await;
    for created in tenants {
        created.unwrap();
    }
    let admin_t0 = admin("t0");
    let users = futures_util::future::join_all(
        (0..12).map(|i| api.put_user(&admin_t0, put("t0", &format!("u{i}"), "operator"))),
    )
    .await;
    for user in users {
        user.unwrap();
    }
    assert_eq!(user_ids(h, &admin_t0, "t0").await.len(), 12);
}
