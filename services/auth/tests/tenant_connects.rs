//! Connects across tenants, on SQLite and PostgreSQL (as the app role): goclaw
//! tenant hints need ownership or membership, a disabled tenant refuses every
//! connect, a removed user's credentials stop working, and an OpenClaw client
//! presenting an API key lands in the key's tenant and user.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{
    CreateApiKeyRequest, PutUserRequest, RemoveUserRequest, UpdateTenantRequest,
};
use support::{
    ConnectOptions, GATEWAY_TOKEN, Harness, TestDevice, admin, approve, assert_code, detail_code,
    deviceless, goclaw, owner, pending_of, principal_of, strings,
};

behaviour_suite!(
    tenant_hints_need_ownership_or_membership,
    a_disabled_tenant_refuses_every_connect,
    a_removed_users_credentials_stop_working,
    openclaw_api_keys_land_in_the_keys_tenant_and_user,
);

async fn put_user(h: &Harness, tenant: &str, user: &str, role: &str) {
    h.api()
        .put_user(
            &owner("default"),
            PutUserRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                role: role.into(),
                display_name: String::new(),
            },
        )
        .await
        .unwrap();
}

/// A key of `tenant` acting as `user`, created by the tenant's admin.
async fn key_for(h: &Harness, tenant: &str, user: &str, scopes: &[&str]) -> String {
    h.api()
        .create_api_key(
            &admin(tenant),
            CreateApiKeyRequest {
                name: format!("{user}'s key"),
                scopes: strings(scopes),
                owner_id: user.into(),
                expires_at_ms: 0,
            },
        )
        .await
        .unwrap()
        .secret
}

fn revoked(result: Result<impl std::fmt::Debug, clawgate_proto::ServiceError>) {
    let err = assert_code(result, ErrorCode::Unauthorized);
    assert_eq!(detail_code(&err), "TENANT_ACCESS_REVOKED", "{err:?}");
    assert_eq!(err.message, "unauthorized: tenant access revoked");
}

async fn tenant_hints_need_ownership_or_membership(h: &Harness) {
    h.create_tenant("acme").await;
    put_user(h, "acme", "olga", "operator").await;
    put_user(h, "acme", "vic", "viewer").await;
    put_user(h, "acme", "ada", "admin").await;

    let connect = |user: &str, hint: &str| h.connect(goclaw(GATEWAY_TOKEN, user, "", hint));
    let olga = principal_of(&connect("olga", "acme").await.unwrap());
    assert_eq!(
        (
            olga.tenant_id.as_str(),
            olga.user_id.as_str(),
            olga.role.as_str()
        ),
        ("acme", "olga", "operator")
    );
    assert_eq!(olga.scopes, strings(&["operator.read", "operator.write"]));
    let vic = principal_of(&connect("vic", "acme").await.unwrap());
    assert_eq!(
        (vic.role.as_str(), vic.scopes.clone()),
        ("viewer", strings(&["operator.read"]))
    );
    let ada = principal_of(&connect("ada", "acme").await.unwrap());
    assert_eq!(
        (ada.role.as_str(), ada.scopes.clone()),
        ("admin", strings(&["operator.admin"]))
    );
    // No hint, or the default tenant named: admin of the default tenant.
    for hint in ["", "default"] {
        let p = principal_of(&connect("olga", hint).await.unwrap());
        assert_eq!(
            (p.tenant_id.as_str(), p.role.as_str()),
            ("default", "admin")
        );
    }
    // No membership, an unknown tenant: the same refusal.
    revoked(connect("mallory", "acme").await);
    revoked(connect("olga", "nowhere").await);
    // The owner needs no membership.
    let alice = principal_of(&connect("alice", "acme").await.unwrap());
    assert_eq!(
        (alice.tenant_id.as_str(), alice.role.as_str()),
        ("acme", "owner")
    );
    // A removed membership no longer admits.
    h.api()
        .remove_user(
            &admin("acme"),
            RemoveUserRequest {
                tenant_id: String::new(),
                user_id: "olga".into(),
            },
        )
        .await
        .unwrap();
    revoked(connect("olga", "acme").await);
}

async fn a_disabled_tenant_refuses_every_connect(h: &Harness) {
    h.create_tenant("acme").await;
    put_user(h, "acme", "olga", "operator").await;
    let goclaw_key = key_for(h, "acme", "olga", &["operator.write"]).await;
    let openclaw_key = key_for(h, "acme", "olga", &["operator.read", "operator.write"]).await;
    let device = TestDevice::new(40);
    let with_key = ConnectOptions {
        token: Some(openclaw_key.clone()),
        ..ConnectOptions::default()
    };
    let request_id =
        pending_of(&h.connect(device.request(h.now(), &with_key)).await.unwrap()).request_id;
    h.api()
        .approve_pairing(&admin("acme"), approve(&request_id))
        .await
        .unwrap();
    let device_token = h
        .connect(device.request(h.now(), &with_key))
        .await
        .unwrap()
        .device_token;

    // Every device connect below presents the device token too, so it is reused
    // (a connect without it would mint a new one and retire this one).
    let key_and_token = ConnectOptions {
        device_token: Some(device_token.clone()),
        ..with_key.clone()
    };
    let shared_and_token = ConnectOptions {
        device_token: Some(device_token.clone()),
        ..ConnectOptions::default()
    };
    let token_only = ConnectOptions::with_device_token(&device_token);
    let attempts = || async {
        vec![
            h.connect(goclaw(&goclaw_key, "", "", "")).await,
            h.connect(goclaw(GATEWAY_TOKEN, "olga", "", "acme")).await,
            h.connect(goclaw(GATEWAY_TOKEN, "alice", "", "acme")).await,
            h.connect(deviceless(
                Some(openclaw_key.as_str()),
                "operator",
                "cli",
                "cli",
                false,
            ))
            .await,
            h.connect(device.request(h.now(), &key_and_token)).await,
            h.connect(device.request(h.now(), &token_only)).await,
            h.connect(device.request(h.now(), &shared_and_token)).await,
        ]
    };
    for result in attempts().await {
        principal_of(&result.unwrap());
    }

    let disable = |status: &str| UpdateTenantRequest {
        tenant_id: "acme".into(),
        name: None,
        status: Some(status.into()),
    };
    let updated = h
        .api()
        .update_tenant(&owner("default"), disable("disabled"))
        .await
        .unwrap();
    assert_eq!(updated.status, "disabled");
    for result in attempts().await {
        revoked(result);
    }
    // The default tenant stays usable (and cannot be disabled).
    principal_of(
        &h.connect(goclaw(GATEWAY_TOKEN, "alice", "", ""))
            .await
            .unwrap(),
    );
    assert_code(
        h.api()
            .update_tenant(
                &owner("default"),
                UpdateTenantRequest {
                    tenant_id: "default".into(),
                    name: None,
                    status: Some("disabled".into()),
                },
            )
            .await,
        ErrorCode::FailedPrecondition,
    );

    h.api()
        .update_tenant(&owner("default"), disable("active"))
        .await
        .unwrap();
    for result in attempts().await {
        principal_of(&result.unwrap());
    }
}

async fn a_removed_users_credentials_stop_working(h: &Harness) {
    h.create_tenant("acme").await;
    put_user(h, "acme", "olga", "operator").await;
    put_user(h, "acme", "otto", "operator").await;
    let olga_key = key_for(h, "acme", "olga", &["operator.read", "operator.write"]).await;
    let otto_key = key_for(h, "acme", "otto", &["operator.read", "operator.write"]).await;
    let device = TestDevice::new(41);
    let with_key = ConnectOptions {
        token: Some(olga_key.clone()),
        ..ConnectOptions::default()
    };
    let request_id =
        pending_of(&h.connect(device.request(h.now(), &with_key)).await.unwrap()).request_id;
    h.api()
        .approve_pairing(&admin("acme"), approve(&request_id))
        .await
        .unwrap();
    let device_token = h
        .connect(device.request(h.now(), &with_key))
        .await
        .unwrap()
        .device_token;
    let by_token = ConnectOptions::with_device_token(&device_token);
    principal_of(&h.connect(device.request(h.now(), &by_token)).await.unwrap());
    principal_of(&h.connect(goclaw(&olga_key, "", "", "")).await.unwrap());

    let removed = h
        .api()
        .remove_user(
            &admin("acme"),
            RemoveUserRequest {
                tenant_id: "acme".into(),
                user_id: "olga".into(),
            },
        )
        .await
        .unwrap();
    assert!(removed.removed);
    assert_eq!(
        (removed.tenant_id.as_str(), removed.user_id.as_str()),
        ("acme", "olga")
    );
    // The key was revoked, the device token too; the device itself is refused
    // whatever it presents.
    assert_code(
        h.connect(goclaw(&olga_key, "", "", "")).await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        h.connect(device.request(h.now(), &by_token)).await,
        ErrorCode::Unauthorized,
    );
    revoked(
        h.connect(device.request(h.now(), &ConnectOptions::default()))
            .await,
    );
    let keys = h
        .api()
        .list_api_keys(&admin("acme"), Default::default())
        .await
        .unwrap()
        .keys;
    assert!(
        keys.iter()
            .all(|k| (k.owner_id == "olga") == (k.revoked_at_ms > 0))
    );
    // Another user of the tenant is untouched.
    let otto = principal_of(&h.connect(goclaw(&otto_key, "", "", "")).await.unwrap());
    assert_eq!(otto.user_id, "otto");
    // Removing again (or a user never added) is unknown.
    let again = RemoveUserRequest {
        tenant_id: "acme".into(),
        user_id: "olga".into(),
    };
    let err = assert_code(
        h.api().remove_user(&admin("acme"), again).await,
        ErrorCode::NotFound,
    );
    assert_eq!(err.message, "unknown user");
    // Putting the user back restores the membership, not the revoked credentials.
    put_user(h, "acme", "olga", "operator").await;
    assert_code(
        h.connect(goclaw(&olga_key, "", "", "")).await,
        ErrorCode::Unauthorized,
    );
    let fresh = key_for(h, "acme", "olga", &["operator.read"]).await;
    principal_of(&h.connect(goclaw(&fresh, "", "", "")).await.unwrap());
}

async fn openclaw_api_keys_land_in_the_keys_tenant_and_user(h: &Harness) {
    h.create_tenant("acme").await;
    let key = key_for(h, "acme", "olga", &["operator.read", "operator.write"]).await;
    let other_key = key_for(h, "acme", "otto", &["operator.admin"]).await;

    // Device-less: the requested scopes the key grants, in the key's tenant and user.
    let mut request = deviceless(Some(key.as_str()), "operator", "cli", "cli", false);
    if let Some(clawgate_proto::auth::authenticate_connect_request::Connect::Openclaw(c)) =
        request.connect.as_mut()
    {
        c.scopes = strings(&["operator.read", "operator.write", "operator.admin"]);
    }
    let p = principal_of(&h.connect(request).await.unwrap());
    assert_eq!(
        (p.tenant_id.as_str(), p.user_id.as_str(), p.role.as_str()),
        ("acme", "olga", "operator")
    );
    assert_eq!(p.scopes, strings(&["operator.read", "operator.write"]));
    // A device-less node still needs a device; a wrong key is a token mismatch.
    let node = h
        .connect(deviceless(Some(key.as_str()), "node", "cli", "cli", false))
        .await;
    assert_eq!(
        detail_code(&assert_code(node, ErrorCode::NotPaired)),
        "DEVICE_IDENTITY_REQUIRED"
    );
    let wrong = h
        .connect(deviceless(
            Some("clawgate_00000000000000000000000000000000"),
            "operator",
            "cli",
            "cli",
            false,
        ))
        .await;
    assert_eq!(
        detail_code(&assert_code(wrong, ErrorCode::Unauthorized)),
        "AUTH_TOKEN_MISMATCH"
    );

    // A device pairs into the key's tenant, as the key's user.
    let device = TestDevice::new(42);
    let with_key = ConnectOptions {
        token: Some(key.clone()),
        ..ConnectOptions::default().scopes(&["operator.write", "operator.pairing"])
    };
    let response = h.connect(device.request(h.now(), &with_key)).await.unwrap();
    let created = response.created_request.clone().expect("announced");
    assert_eq!(
        (created.tenant_id.as_str(), created.user_id.as_str()),
        ("acme", "olga")
    );
    assert_eq!(
        created.scopes,
        strings(&["operator.write"]),
        "capped to the key"
    );
    let request_id = pending_of(&response).request_id;
    // Invisible to the default tenant; approved by acme's admin, it stays olga's.
    assert_code(
        h.api()
            .approve_pairing(&admin("default"), approve(&request_id))
            .await,
        ErrorCode::NotFound,
    );
    let approved = h
        .api()
        .approve_pairing(&admin("acme"), approve(&request_id))
        .await
        .unwrap()
        .device
        .unwrap();
    assert_eq!(
        (approved.tenant_id.as_str(), approved.user_id.as_str()),
        ("acme", "olga")
    );
    let response = h.connect(device.request(h.now(), &with_key)).await.unwrap();
    let p = principal_of(&response);
    assert_eq!(
        (
            p.tenant_id.as_str(),
            p.user_id.as_str(),
            p.device_id.as_str()
        ),
        ("acme", "olga", device.id.as_str())
    );
    assert_eq!(p.scopes, strings(&["operator.write"]));
    let by_token =
        ConnectOptions::with_device_token(&response.device_token).scopes(&["operator.read"]);
    let p = principal_of(&h.connect(device.request(h.now(), &by_token)).await.unwrap());
    assert_eq!((p.tenant_id.as_str(), p.user_id.as_str()), ("acme", "olga"));
    // The same device with another user's key is refused.
    let as_otto = ConnectOptions {
        token: Some(other_key),
        ..ConnectOptions::default().scopes(&["operator.read"])
    };
    let err = assert_code(
        h.connect(device.request(h.now(), &as_otto)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISMATCH");
    // With the shared token the paired device is still acme's and olga's.
    let shared = ConnectOptions::default().scopes(&["operator.read"]);
    let p = principal_of(&h.connect(device.request(h.now(), &shared)).await.unwrap());
    assert_eq!((p.tenant_id.as_str(), p.user_id.as_str()), ("acme", "olga"));
}
