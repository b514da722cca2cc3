//! The OpenClaw connect at the service level, on SQLite and PostgreSQL: every
//! path through shared token, device proof, device token and pairing, and every
//! refusal with its reference `details.code`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{
    ApprovePairingRequest, AuthApi, RevokeDeviceTokenRequest, RotateDeviceTokenRequest,
};
use support::{
    ConnectOptions, Harness, LOOPBACK, TestDevice, admin, assert_code, detail_code, deviceless,
    pairing_details, pending_of, principal, principal_of, strings,
};

behaviour_suite!(
    deviceless_operator_gets_no_scopes_and_wrong_tokens_are_refused,
    deviceless_node_needs_a_device,
    new_device_needs_pairing_with_reference_details,
    approved_device_gets_and_reuses_a_device_token,
    device_token_failures_are_refused,
    rotated_and_revoked_tokens_stop_working,
    local_auto_approval_follows_the_rules,
    upgrades_need_approval,
    device_proof_failures_carry_their_codes,
    repeated_failures_lock_the_client_out,
);

/// Pairs `device` (remote, default scopes) through an admin approval, then
/// connects it once with the shared token. Returns its device token.
async fn pair(h: &Harness, device: &TestDevice, options: &ConnectOptions) -> String {
    let response = h.connect(device.request(h.now(), options)).await.unwrap();
    let request_id = pending_of(&response).request_id;
    h.api()
        .approve_pairing(
            &admin("default"),
            ApprovePairingRequest {
                request_id,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let response = h.connect(device.request(h.now(), options)).await.unwrap();
    assert!(!response.device_token.is_empty());
    response.device_token
}

async fn deviceless_operator_gets_no_scopes_and_wrong_tokens_are_refused(h: &Harness) {
    let response = h
        .connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "operator",
            "cli",
            "cli",
            false,
        ))
        .await
        .unwrap();
    let p = principal_of(&response);
    assert_eq!(
        (p.tenant_id.as_str(), p.user_id.as_str(), p.role.as_str()),
        ("default", "owner", "operator")
    );
    assert!(p.scopes.is_empty(), "unbound scopes must be cleared");
    assert!(p.device_id.is_empty());
    assert!(response.device_token.is_empty());

    // The local backend client keeps its scopes; the same client remote does not.
    let local_backend = h
        .connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "operator",
            "gateway-client",
            "backend",
            true,
        ))
        .await
        .unwrap();
    assert_eq!(
        principal_of(&local_backend).scopes,
        strings(&["operator.read", "operator.write"])
    );
    let remote_backend = h
        .connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "operator",
            "gateway-client",
            "backend",
            false,
        ))
        .await
        .unwrap();
    assert!(principal_of(&remote_backend).scopes.is_empty());

    let err = assert_code(
        h.connect(deviceless(Some("nope"), "operator", "cli", "cli", false))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISMATCH");
    assert!(err.message.starts_with("unauthorized:"));
    let err = assert_code(
        h.connect(deviceless(None, "operator", "cli", "cli", false))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISSING");
    let err = assert_code(
        h.connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "admin",
            "cli",
            "cli",
            false,
        ))
        .await,
        ErrorCode::InvalidRequest,
    );
    assert_eq!(err.message, "invalid role");
}

async fn deviceless_node_needs_a_device(h: &Harness) {
    let err = assert_code(
        h.connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "node",
            "node-host",
            "node",
            false,
        ))
        .await,
        ErrorCode::NotPaired,
    );
    assert_eq!(detail_code(&err), "DEVICE_IDENTITY_REQUIRED");
    assert_eq!(err.message, "device identity required");
    // A wrong shared token wins over the missing device.
    let err = assert_code(
        h.connect(deviceless(Some("nope"), "node", "node-host", "node", false))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISMATCH");
}

async fn new_device_needs_pairing_with_reference_details(h: &Harness) {
    let device = TestDevice::new(1);
    let options = ConnectOptions::default();
    let first = h.connect(device.request(h.now(), &options)).await.unwrap();
    let pending = pending_of(&first);
    assert_eq!(pending.reason, "not-paired");
    assert_eq!(pending.device_id, device.id);
    assert_eq!(pending.error_message, "pairing required: not-paired");
    assert_eq!(pending.expires_at_ms, h.now() + 5 * 60 * 1000);
    let details = pairing_details(&first);
    assert_eq!(details["code"], "PAIRING_REQUIRED");
    assert_eq!(details["reason"], "not-paired");
    assert_eq!(details["requestId"], pending.request_id.as_str());
    assert_eq!(details["deviceId"], device.id.as_str());
    assert_eq!(details["requestedRole"], "operator");
    assert_eq!(
        details["requestedScopes"],
        serde_json::json!(["operator.read", "operator.write"])
    );
    assert!(details["remediationHint"].is_string());
    let created = first.created_request.expect("a new request is announced");
    assert_eq!(created.request_id, pending.request_id);
    assert_eq!(created.tenant_id, "default");
    assert_eq!(created.public_key, device.public_key);
    assert_eq!(
        (created.platform.as_str(), created.client_id.as_str()),
        ("linux", "cli")
    );
    assert_eq!(created.remote_ip, "203.0.113.7");
    assert!(!first.auto_approved);

    // A second connect merges into the same request and announces nothing.
    let second = h
        .connect(device.request(h.now(), &options.clone().scopes(&["operator.pairing"])))
        .await
        .unwrap();
    assert_eq!(pending_of(&second).request_id, pending.request_id);
    assert!(second.created_request.is_none());
    let list = h
        .api()
        .list_pairing(&admin("default"), Default::default())
        .await
        .unwrap();
    assert_eq!(list.pending.len(), 1);
    assert_eq!(
        list.pending[0].scopes,
        strings(&["operator.pairing", "operator.read", "operator.write"])
    );

    // After 5 minutes the request is gone; the next connect creates a new one.
    h.advance(5 * 60 * 1000);
    assert!(
        h.api()
            .list_pairing(&admin("default"), Default::default())
            .await
            .unwrap()
            .pending
            .is_empty()
    );
    let third = h.connect(device.request(h.now(), &options)).await.unwrap();
    assert_ne!(pending_of(&third).request_id, pending.request_id);
    assert!(third.created_request.is_some());
}

async fn approved_device_gets_and_reuses_a_device_token(h: &Harness) {
    let device = TestDevice::new(2);
    let options = ConnectOptions::default().scopes(&["operator.write"]);
    let response = h.connect(device.request(h.now(), &options)).await.unwrap();
    let request_id = pending_of(&response).request_id;
    let approved = h
        .api()
        .approve_pairing(
            &admin("default"),
            ApprovePairingRequest {
                request_id: request_id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(approved.request_id, request_id);
    assert_eq!(approved.request.unwrap().device_id, device.id);
    let paired = approved.device.unwrap();
    assert_eq!(
        (
            paired.device_id.as_str(),
            paired.tenant_id.as_str(),
            paired.user_id.as_str()
        ),
        (device.id.as_str(), "default", "admin")
    );
    assert_eq!(paired.roles, strings(&["operator"]));

    h.advance(1000);
    let response = h.connect(device.request(h.now(), &options)).await.unwrap();
    let p = principal_of(&response);
    assert_eq!(
        (
            p.tenant_id.as_str(),
            p.user_id.as_str(),
            p.device_id.as_str()
        ),
        ("default", "admin", device.id.as_str())
    );
    assert_eq!(p.scopes, strings(&["operator.write"]));
    assert_eq!(response.device_token.len(), 43);
    assert_eq!(response.device_token_issued_at_ms, h.now());
    assert_eq!(response.device_token_role, "operator");
    assert_eq!(
        response.device_token_scopes,
        strings(&["operator.read", "operator.write"])
    );
    let token = response.device_token.clone();

    // Reconnecting with the device token alone reuses it.
    h.advance(1000);
    let again = h
        .connect(device.request(
            h.now(),
            &ConnectOptions::with_device_token(&token).scopes(&["operator.read"]),
        ))
        .await
        .unwrap();
    assert_eq!(again.device_token, token);
    assert_eq!(principal_of(&again).scopes, strings(&["operator.read"]));
    assert_eq!(
        again.device_token_issued_at_ms,
        response.device_token_issued_at_ms
    );
    // `auth.token` alone is a device-token candidate too.
    let fallback = ConnectOptions {
        device_token: None,
        ..ConnectOptions::with_device_token(&token)
    };
    assert_eq!(
        h.connect(device.request(h.now(), &fallback))
            .await
            .unwrap()
            .device_token,
        token
    );

    // The token is stored hashed only.
    let tables = h.dump_tables().await;
    assert!(!tables.contains(&token));
    // The connect's bookkeeping (last use) is written off the connect path.
    let mut waited = 0;
    let list = loop {
        let list = h
            .api()
            .list_pairing(&admin("default"), Default::default())
            .await
            .unwrap();
        if list.paired[0].tokens[0].last_used_at_ms == h.now() || waited >= 100 {
            break list;
        }
        waited += 1;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(list.paired.len(), 1);
    assert!(list.paired[0].tokens.iter().all(|t| t.token.is_empty()));
    assert_eq!(list.paired[0].tokens[0].last_used_at_ms, h.now());
}

async fn device_token_failures_are_refused(h: &Harness) {
    let device = TestDevice::new(3);
    let token = pair(h, &device, &ConnectOptions::default()).await;

    let wrong = ConnectOptions::with_device_token("not-the-token");
    let err = assert_code(
        h.connect(device.request(h.now(), &wrong)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");
    // Only `auth.token`, neither shared nor device token: a shared-token mismatch
    // the client may retry with its device token.
    let wrong_shared = ConnectOptions {
        token: Some("nope".into()),
        ..ConnectOptions::default()
    };
    let err = assert_code(
        h.connect(device.request(h.now(), &wrong_shared)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISMATCH");
    assert_eq!(err.details.unwrap()["canRetryWithDeviceToken"], true);
    // More scopes than the token carries.
    let wider = ConnectOptions::with_device_token(&token).scopes(&["operator.admin"]);
    let err = assert_code(
        h.connect(device.request(h.now(), &wider)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");
    // Another device's token does not work for this device.
    let other = TestDevice::new(4);
    let err = assert_code(
        h.connect(other.request(h.now(), &ConnectOptions::with_device_token(&token)))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");
    // No credential at all.
    let none = ConnectOptions {
        token: None,
        ..ConnectOptions::default()
    };
    let err = assert_code(
        h.connect(device.request(h.now(), &none)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_TOKEN_MISSING");
    // The node role has no token for this device.
    let node = ConnectOptions {
        role: "node".into(),
        scopes: vec![],
        ..ConnectOptions::with_device_token(&token)
    };
    let err = assert_code(
        h.connect(device.request(h.now(), &node)).await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");
}

async fn rotated_and_revoked_tokens_stop_working(h: &Harness) {
    let device = TestDevice::new(5);
    let old = pair(h, &device, &ConnectOptions::default()).await;
    h.advance(1000);
    let rotated = h
        .api()
        .rotate_device_token(
            &admin("default"),
            RotateDeviceTokenRequest {
                device_id: device.id.clone(),
                role: "operator".into(),
                scopes: strings(&["operator.read"]),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rotated.device_id.as_str(), rotated.role.as_str()),
        (device.id.as_str(), "operator")
    );
    assert_eq!(rotated.scopes, strings(&["operator.read"]));
    assert_eq!(rotated.rotated_at_ms, h.now());
    assert!(
        rotated.token.is_empty(),
        "an admin elsewhere does not see the new token"
    );
    let err = assert_code(
        h.connect(device.request(h.now(), &ConnectOptions::with_device_token(&old)))
            .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");

    // The device rotating its own token sees it, and it works.
    let own = principal(
        "default",
        "admin",
        &["operator.pairing", "operator.read"],
        &device.id,
    );
    let mine = h
        .api()
        .rotate_device_token(
            &own,
            RotateDeviceTokenRequest {
                device_id: device.id.clone(),
                role: "operator".into(),
                scopes: vec![],
            },
        )
        .await
        .unwrap();
    assert_eq!(mine.token.len(), 43);
    let ok = h
        .connect(device.request(
            h.now(),
            &ConnectOptions::with_device_token(&mine.token).scopes(&["operator.read"]),
        ))
        .await
        .unwrap();
    assert_eq!(ok.device_token, mine.token);

    let revoked = h
        .api()
        .revoke_device_token(
            &admin("default"),
            RevokeDeviceTokenRequest {
                device_id: device.id.clone(),
                role: "operator".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at_ms, h.now());
    let err = assert_code(
        h.connect(device.request(
            h.now(),
            &ConnectOptions::with_device_token(&mine.token).scopes(&["operator.read"]),
        ))
        .await,
        ErrorCode::Unauthorized,
    );
    assert_eq!(detail_code(&err), "AUTH_DEVICE_TOKEN_MISMATCH");
    // With the shared token, a revoked role needs approval again.
    let response = h
        .connect(device.request(
            h.now(),
            &ConnectOptions::default().scopes(&["operator.read"]),
        ))
        .await
        .unwrap();
    assert_eq!(pending_of(&response).reason, "role-upgrade");
}

async fn local_auto_approval_follows_the_rules(h: &Harness) {
    let auto = h.with_auto_approve().await;
    let device = TestDevice::new(6);
    let local = ConnectOptions::default().local();

    // Configured but remote: pairing required.
    let remote = auto
        .authenticate_connect(
            &Default::default(),
            device.request(h.now(), &ConnectOptions::default()),
        )
        .await
        .unwrap();
    assert_eq!(pending_of(&remote).reason, "not-paired");
    // Local but not configured: pairing required.
    let unconfigured = h.connect(device.request(h.now(), &local)).await.unwrap();
    assert_eq!(pending_of(&unconfigured).reason, "not-paired");

    // Local and configured: approved silently, token issued.
    let response = auto
        .authenticate_connect(&Default::default(), device.request(h.now(), &local))
        .await
        .unwrap();
    assert!(response.auto_approved);
    let resolved = response.resolved_request.clone().expect("resolved request");
    assert_eq!(resolved.device_id, device.id);
    assert!(response.created_request.is_none());
    let p = principal_of(&response);
    assert_eq!(
        (p.tenant_id.as_str(), p.user_id.as_str()),
        ("default", "owner")
    );
    assert_eq!(p.device_id, device.id);
    assert!(!response.device_token.is_empty());
    assert_eq!(resolved.remote_ip, LOOPBACK.split(':').next().unwrap());

    // A role upgrade may be auto-approved locally.
    let node = ConnectOptions {
        role: "node".into(),
        scopes: vec![],
        ..local.clone()
    };
    let response = auto
        .authenticate_connect(&Default::default(), device.request(h.now(), &node))
        .await
        .unwrap();
    assert!(response.auto_approved);
    assert_eq!(principal_of(&response).role, "node");

    // A scope upgrade never is.
    let wider = local.clone().scopes(&["operator.admin"]);
    let response = auto
        .authenticate_connect(&Default::default(), device.request(h.now(), &wider))
        .await
        .unwrap();
    assert_eq!(pending_of(&response).reason, "scope-upgrade");
    assert!(!response.auto_approved);
    assert!(response.created_request.is_some());
}

async fn upgrades_need_approval(h: &Harness) {
    let device = TestDevice::new(7);
    pair(h, &device, &ConnectOptions::default()).await;

    let wider =
        ConnectOptions::default().scopes(&["operator.read", "operator.write", "operator.pairing"]);
    let response = h.connect(device.request(h.now(), &wider)).await.unwrap();
    let details = pairing_details(&response);
    assert_eq!(details["reason"], "scope-upgrade");
    assert_eq!(
        details["approvedScopes"],
        serde_json::json!(["operator.read", "operator.write"])
    );
    assert_eq!(details["approvedRoles"], serde_json::json!(["operator"]));
    // A subset of the approved scopes needs nothing (write implies read).
    let narrower = ConnectOptions::default().scopes(&["operator.read"]);
    principal_of(&h.connect(device.request(h.now(), &narrower)).await.unwrap());

    let node = ConnectOptions {
        role: "node".into(),
        scopes: vec![],
        ..ConnectOptions::default()
    };
    let response = h.connect(device.request(h.now(), &node)).await.unwrap();
    assert_eq!(pending_of(&response).reason, "role-upgrade");
    assert_eq!(pairing_details(&response)["requestedRole"], "node");

    let moved = ConnectOptions {
        platform: "Darwin".into(),
        ..ConnectOptions::default()
    };
    let response = h.connect(device.request(h.now(), &moved)).await.unwrap();
    assert_eq!(pending_of(&response).reason, "metadata-upgrade");
    // Approving pins the new platform; the device then connects as the node too.
    let request_id = pending_of(&response).request_id;
    let approved = h
        .api()
        .approve_pairing(
            &admin("default"),
            ApprovePairingRequest {
                request_id,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .device
        .unwrap();
    assert_eq!(approved.platform, "darwin");
    assert_eq!(approved.roles, strings(&["node", "operator"]));
    assert_eq!(
        approved.scopes,
        strings(&["operator.pairing", "operator.read", "operator.write"])
    );
    principal_of(&h.connect(device.request(h.now(), &moved)).await.unwrap());
    let node_moved = ConnectOptions {
        platform: "darwin".into(),
        ..node
    };
    assert_eq!(
        principal_of(
            &h.connect(device.request(h.now(), &node_moved))
                .await
                .unwrap()
        )
        .scopes,
        Vec::<String>::new()
    );
}

async fn device_proof_failures_carry_their_codes(h: &Harness) {
    let device = TestDevice::new(8);
    let mismatch = ConnectOptions {
        nonce: "another-nonce".into(),
        ..ConnectOptions::default()
    };
    let err = assert_code(
        h.connect(device.request(h.now(), &mismatch)).await,
        ErrorCode::InvalidRequest,
    );
    assert_eq!(detail_code(&err), "DEVICE_AUTH_NONCE_MISMATCH");
    let err = assert_code(
        h.connect(device.request(h.now() - 130_000, &ConnectOptions::default()))
            .await,
        ErrorCode::InvalidRequest,
    );
    assert_eq!(detail_code(&err), "DEVICE_AUTH_SIGNATURE_EXPIRED");
    // Signed scopes differ from the sent ones.
    let mut request = device.request(h.now(), &ConnectOptions::default());
    if let Some(clawgate_proto::auth::authenticate_connect_request::Connect::Openclaw(c)) =
        &mut request.connect
    {
        c.scopes = strings(&["operator.admin"]);
    }
    let err = assert_code(h.connect(request).await, ErrorCode::InvalidRequest);
    assert_eq!(detail_code(&err), "DEVICE_AUTH_SIGNATURE_INVALID");
    // The proof is checked before a wrong shared token is reported (§2.3 steps 8–10).
    let wrong = ConnectOptions {
        token: Some("nope".into()),
        nonce: "x".into(),
        ..ConnectOptions::default()
    };
    assert_code(
        h.connect(device.request(h.now(), &wrong)).await,
        ErrorCode::InvalidRequest,
    );
}

async fn repeated_failures_lock_the_client_out(h: &Harness) {
    for _ in 0..10 {
        let err = assert_code(
            h.connect(deviceless(Some("nope"), "operator", "cli", "cli", false))
                .await,
            ErrorCode::Unauthorized,
        );
        assert_eq!(detail_code(&err), "AUTH_TOKEN_MISMATCH");
    }
    // Locked: even the right token is refused without being checked.
    let err = assert_code(
        h.connect(deviceless(
            Some(support::GATEWAY_TOKEN),
            "operator",
            "cli",
            "cli",
            false,
        ))
        .await,
        ErrorCode::ResourceExhausted,
    );
    assert_eq!(detail_code(&err), "AUTH_RATE_LIMITED");
    assert!(err.retry_after_ms.is_some());
    // Loopback clients are exempt.
    for _ in 0..11 {
        assert_code(
            h.connect(deviceless(Some("nope"), "operator", "cli", "cli", true))
                .await,
            ErrorCode::Unauthorized,
        );
    }
}
