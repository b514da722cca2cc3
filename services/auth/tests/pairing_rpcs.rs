//! Pairing RPCs at the service level, on SQLite and PostgreSQL: approval rules,
//! self-only rules for device-bound callers, tenant isolation, and secrets
//! stored hashed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{
    ApprovePairingRequest, CreateApiKeyRequest, RejectPairingRequest, RemoveDeviceRequest,
    RequestPairingRequest, RevokeApiKeyRequest, RevokeDeviceTokenRequest, RotateDeviceTokenRequest,
};
use support::{
    ConnectOptions, Harness, TestDevice, admin, approve, assert_code, key_request, new_request,
    paired, pending_of, principal, principal_of, strings,
};

behaviour_suite!(
    approver_needs_the_requested_scopes,
    reject_and_remove_devices,
    non_admin_devices_manage_only_themselves,
    tenants_are_isolated,
    secrets_are_stored_hashed,
);

async fn approver_needs_the_requested_scopes(h: &Harness) {
    // The request of a shared-token connect is the default user's ("owner"):
    // operators of that user may approve it, and the device becomes theirs.
    let device = TestDevice::new(20);
    let request_id = new_request(
        h,
        &device,
        &ConnectOptions::default().scopes(&["operator.write", "operator.approvals"]),
    )
    .await;
    let pairer = principal(
        "default",
        "owner",
        &["operator.pairing", "operator.write"],
        "",
    );
    let err = assert_code(
        h.api().approve_pairing(&pairer, approve(&request_id)).await,
        ErrorCode::Forbidden,
    );
    assert_eq!(err.message, "missing scope: operator.approvals");
    let reader = principal("default", "owner", &["operator.read"], "");
    let err = assert_code(
        h.api().approve_pairing(&reader, approve(&request_id)).await,
        ErrorCode::Forbidden,
    );
    assert_eq!(err.message, "missing scope: operator.pairing");
    // Another user's request is unknown to an operator, like a missing one.
    let stranger = principal(
        "default",
        "pat",
        &["operator.pairing", "operator.write", "operator.approvals"],
        "",
    );
    let err = assert_code(
        h.api()
            .approve_pairing(&stranger, approve(&request_id))
            .await,
        ErrorCode::NotFound,
    );
    assert_eq!(err.message, "unknown requestId");
    let enough = principal(
        "default",
        "owner",
        &["operator.pairing", "operator.write", "operator.approvals"],
        "",
    );
    let approved = h
        .api()
        .approve_pairing(&enough, approve(&request_id))
        .await
        .unwrap();
    assert_eq!(approved.device.unwrap().user_id, "owner");
    // Resolved once.
    assert_code(
        h.api()
            .approve_pairing(&admin("default"), approve(&request_id))
            .await,
        ErrorCode::NotFound,
    );
    assert_code(
        h.api()
            .approve_pairing(&admin("default"), ApprovePairingRequest::default())
            .await,
        ErrorCode::InvalidRequest,
    );
}

async fn reject_and_remove_devices(h: &Harness) {
    let device = TestDevice::new(21);
    let request_id = new_request(h, &device, &ConnectOptions::default()).await;
    let rejected = h
        .api()
        .reject_pairing(
            &admin("default"),
            RejectPairingRequest {
                request_id: request_id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (rejected.request_id.as_str(), rejected.device_id.as_str()),
        (request_id.as_str(), device.id.as_str())
    );
    assert!(
        h.api()
            .list_pairing(&admin("default"), Default::default())
            .await
            .unwrap()
            .pending
            .is_empty()
    );
    assert_code(
        h.api()
            .reject_pairing(
                &admin("default"),
                RejectPairingRequest {
                    request_id,
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::NotFound,
    );

    let p = paired(h, &device, &["operator.read"]).await;
    assert_eq!(p.device_id, device.id);
    let removed = h
        .api()
        .remove_device(
            &admin("default"),
            RemoveDeviceRequest {
                device_id: device.id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (removed.device_id.as_str(), removed.tenant_id.as_str()),
        (device.id.as_str(), "default")
    );
    let list = h
        .api()
        .list_pairing(&admin("default"), Default::default())
        .await
        .unwrap();
    assert!(list.paired.is_empty());
    let response = h
        .connect(device.request(h.now(), &ConnectOptions::default()))
        .await
        .unwrap();
    assert_eq!(pending_of(&response).reason, "not-paired");
    assert_code(
        h.api()
            .remove_device(
                &admin("default"),
                RemoveDeviceRequest {
                    device_id: "nope".into(),
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::NotFound,
    );
}

async fn non_admin_devices_manage_only_themselves(h: &Harness) {
    let mine = TestDevice::new(22);
    let other = TestDevice::new(23);
    let me = paired(h, &mine, &["operator.pairing", "operator.write"]).await;
    paired(h, &other, &["operator.read"]).await;
    let other_request = new_request(
        h,
        &other,
        &ConnectOptions::default().scopes(&["operator.pairing"]),
    )
    .await;

    let list = h.api().list_pairing(&me, Default::default()).await.unwrap();
    assert_eq!(
        list.paired
            .iter()
            .map(|d| d.device_id.as_str())
            .collect::<Vec<_>>(),
        [mine.id.as_str()]
    );
    assert!(list.pending.is_empty());
    let all = h
        .api()
        .list_pairing(&admin("default"), Default::default())
        .await
        .unwrap();
    assert_eq!((all.paired.len(), all.pending.len()), (2, 1));

    assert_code(
        h.api().approve_pairing(&me, approve(&other_request)).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        h.api()
            .reject_pairing(
                &me,
                RejectPairingRequest {
                    request_id: other_request.clone(),
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(
        h.api()
            .remove_device(
                &me,
                RemoveDeviceRequest {
                    device_id: other.id.clone(),
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::Forbidden,
    );
    let rotate_other = RotateDeviceTokenRequest {
        device_id: other.id.clone(),
        role: "operator".into(),
        scopes: vec![],
    };
    let err = assert_code(
        h.api().rotate_device_token(&me, rotate_other).await,
        ErrorCode::Forbidden,
    );
    assert_eq!(err.message, "device token rotation denied");
    assert_code(
        h.api()
            .revoke_device_token(
                &me,
                RevokeDeviceTokenRequest {
                    device_id: other.id.clone(),
                    role: "operator".into(),
                },
            )
            .await,
        ErrorCode::Forbidden,
    );
    // Its own token: within its approved scopes and its own scopes only.
    let too_wide = RotateDeviceTokenRequest {
        device_id: mine.id.clone(),
        role: "operator".into(),
        scopes: strings(&["operator.admin"]),
    };
    assert_code(
        h.api().rotate_device_token(&me, too_wide).await,
        ErrorCode::Forbidden,
    );
    let rotated = h
        .api()
        .rotate_device_token(
            &me,
            RotateDeviceTokenRequest {
                device_id: mine.id.clone(),
                role: "operator".into(),
                scopes: strings(&["operator.read"]),
            },
        )
        .await
        .unwrap();
    assert!(!rotated.token.is_empty());
    let revoked = h
        .api()
        .revoke_device_token(
            &me,
            RevokeDeviceTokenRequest {
                device_id: mine.id.clone(),
                role: "operator".into(),
            },
        )
        .await
        .unwrap();
    assert!(revoked.revoked_at_ms > 0);
    // goclaw codes are not a device's business.
    let code = h
        .api()
        .request_pairing(
            &admin("default"),
            RequestPairingRequest {
                sender_id: "tg-1".into(),
                channel: "telegram".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let by_code = ApprovePairingRequest {
        pairing_code: code.pairing_code,
        ..Default::default()
    };
    assert_code(
        h.api().approve_pairing(&me, by_code).await,
        ErrorCode::Forbidden,
    );
    let removed = h
        .api()
        .remove_device(
            &me,
            RemoveDeviceRequest {
                device_id: mine.id.clone(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(removed.device_id, mine.id);
}

async fn tenants_are_isolated(h: &Harness) {
    let device = TestDevice::new(24);
    paired(h, &device, &["operator.read"]).await;
    let request_id = new_request(h, &TestDevice::new(25), &ConnectOptions::default()).await;
    let code = h
        .api()
        .request_pairing(
            &admin("default"),
            RequestPairingRequest {
                sender_id: "s-1".into(),
                channel: "telegram".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let key = h
        .api()
        .create_api_key(
            &admin("default"),
            CreateApiKeyRequest {
                name: "k".into(),
                scopes: strings(&["operator.read"]),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .key
        .unwrap();

    let intruder = admin("other");
    let list = h
        .api()
        .list_pairing(&intruder, Default::default())
        .await
        .unwrap();
    assert!(list.pending.is_empty() && list.paired.is_empty());
    assert_code(
        h.api()
            .approve_pairing(&intruder, approve(&request_id))
            .await,
        ErrorCode::NotFound,
    );
    let by_code = ApprovePairingRequest {
        pairing_code: code.pairing_code.clone(),
        ..Default::default()
    };
    assert_code(
        h.api().approve_pairing(&intruder, by_code).await,
        ErrorCode::NotFound,
    );
    assert_code(
        h.api()
            .reject_pairing(
                &intruder,
                RejectPairingRequest {
                    request_id: request_id.clone(),
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::NotFound,
    );
    assert_code(
        h.api()
            .remove_device(
                &intruder,
                RemoveDeviceRequest {
                    device_id: device.id.clone(),
                    ..Default::default()
                },
            )
            .await,
        ErrorCode::NotFound,
    );
    let rotate = RotateDeviceTokenRequest {
        device_id: device.id.clone(),
        role: "operator".into(),
        scopes: vec![],
    };
    assert_code(
        h.api().rotate_device_token(&intruder, rotate).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        h.api()
            .revoke_device_token(
                &intruder,
                RevokeDeviceTokenRequest {
                    device_id: device.id.clone(),
                    role: "operator".into(),
                },
            )
            .await,
        ErrorCode::Forbidden,
    );
    assert!(
        h.api()
            .list_api_keys(&intruder, Default::default())
            .await
            .unwrap()
            .keys
            .is_empty()
    );
    assert_code(
        h.api()
            .revoke_api_key(&intruder, RevokeApiKeyRequest { id: key.id.clone() })
            .await,
        ErrorCode::NotFound,
    );

    // Nothing changed for the first tenant.
    let list = h
        .api()
        .list_pairing(&admin("default"), Default::default())
        .await
        .unwrap();
    assert_eq!((list.paired.len(), list.pending.len()), (1, 2));
    assert!(list.paired[0].tokens.iter().all(|t| t.revoked_at_ms == 0));
    assert_eq!(
        h.api()
            .list_api_keys(&admin("default"), Default::default())
            .await
            .unwrap()
            .keys[0]
            .revoked_at_ms,
        0
    );
    principal_of(
        &h.connect(device.request(
            h.now(),
            &ConnectOptions::default().scopes(&["operator.read"]),
        ))
        .await
        .unwrap(),
    );
}

async fn secrets_are_stored_hashed(h: &Harness) {
    let device = TestDevice::new(26);
    let request_id = new_request(h, &device, &ConnectOptions::default()).await;
    h.api()
        .approve_pairing(&admin("default"), approve(&request_id))
        .await
        .unwrap();
    let token = h
        .connect(device.request(h.now(), &ConnectOptions::default()))
        .await
        .unwrap()
        .device_token;
    let key = h
        .api()
        .create_api_key(&admin("default"), key_request(&["operator.read"]))
        .await
        .unwrap()
        .secret;

    let tables = h.dump_tables().await;
    assert!(!tables.contains(&token), "device token stored in plaintext");
    assert!(!tables.contains(&key), "api key stored in plaintext");
    assert!(
        !tables.contains(&key[9..]),
        "api key body stored in plaintext"
    );
    assert!(!tables.contains(support::GATEWAY_TOKEN));
    use sha2::Digest as _;
    assert!(tables.contains(&hex::encode(sha2::Sha256::digest(token.as_bytes()))));
    assert!(tables.contains(&hex::encode(sha2::Sha256::digest(key.as_bytes()))));
}
