//! The goclaw connect chain and API keys at the service level, on SQLite and
//! PostgreSQL: gateway token, API keys (create, use, revoke, expiry, bindings),
//! browser pairing codes (alphabet, expiry, limits) and paired senders.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use clawgate_auth::{PAIRING_CODE_ALPHABET, PAIRING_CODE_LEN};
use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{
    ApprovePairingRequest, CreateApiKeyRequest, PairingStatusRequest, RejectPairingRequest,
    RemoveDeviceRequest, RequestPairingRequest, RevokeApiKeyRequest,
};
use clawgate_proto::{Principal, ServiceError};
use support::{
    Harness, admin, assert_code, detail_code, goclaw, key_request, pending_of, principal,
    principal_of, strings,
};

behaviour_suite!(
    goclaw_gateway_token_and_wrong_tokens,
    goclaw_browser_pairing_round_trip,
    pairing_codes_expire_and_are_limited_per_account,
    api_keys_create_use_revoke_expire,
    api_keys_are_admin_only_and_tenant_bound,
);

const HOUR_MS: i64 = 60 * 60 * 1000;

async fn goclaw_gateway_token_and_wrong_tokens(h: &Harness) {
    let alice = principal_of(
        &h.connect(goclaw(support::GATEWAY_TOKEN, "alice", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        (
            alice.user_id.as_str(),
            alice.role.as_str(),
            alice.tenant_id.as_str()
        ),
        ("alice", "owner", "default")
    );
    assert_eq!(alice.scopes, strings(&["operator.admin"]));
    // An owner narrows to any existing tenant (by id or slug), never to an unknown one.
    assert_eq!(
        detail_code(&assert_code(
            h.connect(goclaw(support::GATEWAY_TOKEN, "alice", "", "t2"))
                .await,
            ErrorCode::Unauthorized,
        )),
        "TENANT_ACCESS_REVOKED"
    );
    h.create_tenant("T2").await;
    let narrowed = principal_of(
        &h.connect(goclaw(support::GATEWAY_TOKEN, "alice", "", "t2"))
            .await
            .unwrap(),
    );
    assert_eq!(narrowed.tenant_id, "T2", "resolved by slug");
    let narrowed = principal_of(
        &h.connect(goclaw(support::GATEWAY_TOKEN, "alice", "", "T2"))
            .await
            .unwrap(),
    );
    assert_eq!(narrowed.tenant_id, "T2");
    // Anyone else naming another tenant needs a membership there.
    assert_eq!(
        detail_code(&assert_code(
            h.connect(goclaw(support::GATEWAY_TOKEN, "bob", "", "T2"))
                .await,
            ErrorCode::Unauthorized,
        )),
        "TENANT_ACCESS_REVOKED"
    );
    let bob = principal_of(
        &h.connect(goclaw(support::GATEWAY_TOKEN, "bob", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        (bob.role.as_str(), bob.tenant_id.as_str()),
        ("admin", "default")
    );
    let nobody = principal_of(
        &h.connect(goclaw(support::GATEWAY_TOKEN, "", "", ""))
            .await
            .unwrap(),
    );
    assert_eq!(nobody.user_id, "owner");

    assert_code(
        h.connect(goclaw("wrong", "bob", "", "")).await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        h.connect(goclaw(
            "clawgate_00000000000000000000000000000000",
            "bob",
            "",
            "",
        ))
        .await,
        ErrorCode::Unauthorized,
    );
    // A wrong token never falls back to pairing, even with a sender id.
    assert_code(
        h.connect(goclaw("wrong", "", "browser-1", "")).await,
        ErrorCode::Unauthorized,
    );
    assert_code(
        h.connect(goclaw(support::GATEWAY_TOKEN, &"u".repeat(256), "", ""))
            .await,
        ErrorCode::InvalidRequest,
    );
}

async fn goclaw_browser_pairing_round_trip(h: &Harness) {
    let first = h.connect(goclaw("", "dora", "", "")).await.unwrap();
    let pending = pending_of(&first);
    assert_eq!(pending.pairing_code.len(), PAIRING_CODE_LEN);
    assert!(
        pending
            .pairing_code
            .bytes()
            .all(|c| PAIRING_CODE_ALPHABET.contains(&c))
    );
    assert!(!pending.sender_id.is_empty(), "a sender id is generated");
    assert_eq!(pending.expires_at_ms, h.now() + HOUR_MS);
    let created = first.created_request.expect("announced");
    assert_eq!(
        (created.channel.as_str(), created.sender_id.as_str()),
        ("browser", pending.sender_id.as_str())
    );

    // Reconnecting with the sender id before approval returns the same code.
    let again = pending_of(
        &h.connect(goclaw("", "dora", &pending.sender_id, ""))
            .await
            .unwrap(),
    );
    assert_eq!(again.pairing_code, pending.pairing_code);
    let status = |sender: &str| PairingStatusRequest {
        sender_id: sender.into(),
    };
    let api = h.api();
    assert_eq!(
        api.pairing_status(&Principal::default(), status(&pending.sender_id))
            .await
            .unwrap()
            .status,
        "pending"
    );
    assert_eq!(
        api.pairing_status(&Principal::default(), status("unknown-sender"))
            .await
            .unwrap()
            .status,
        "expired"
    );
    assert_code(
        api.pairing_status(&Principal::default(), status("bad sender!"))
            .await,
        ErrorCode::InvalidRequest,
    );

    // Approval by code (lower case accepted).
    let approved = api
        .approve_pairing(
            &admin("default"),
            ApprovePairingRequest {
                pairing_code: pending.pairing_code.to_lowercase(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let device = approved.device.unwrap();
    assert_eq!(
        (device.sender_id.as_str(), device.channel.as_str()),
        (pending.sender_id.as_str(), "browser")
    );
    assert_eq!(
        api.pairing_status(&Principal::default(), status(&pending.sender_id))
            .await
            .unwrap()
            .status,
        "approved"
    );
    let operator = principal_of(
        &h.connect(goclaw("", "dora", &pending.sender_id, ""))
            .await
            .unwrap(),
    );
    assert_eq!(
        (
            operator.role.as_str(),
            operator.tenant_id.as_str(),
            operator.user_id.as_str()
        ),
        ("operator", "default", "dora")
    );
    assert!(!operator.scopes.iter().any(|s| s == "operator.admin"));
    let listed = api
        .list_pairing(&admin("default"), Default::default())
        .await
        .unwrap();
    assert!(
        listed
            .paired
            .iter()
            .any(|d| d.sender_id == pending.sender_id)
    );

    // Removal unpairs: status expired, the next connect starts pairing again.
    let removed = api
        .remove_device(
            &admin("default"),
            RemoveDeviceRequest {
                sender_id: pending.sender_id.clone(),
                channel: "browser".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (removed.sender_id.as_str(), removed.channel.as_str()),
        (pending.sender_id.as_str(), "browser")
    );
    assert_eq!(
        api.pairing_status(&Principal::default(), status(&pending.sender_id))
            .await
            .unwrap()
            .status,
        "expired"
    );
    let restart = pending_of(
        &h.connect(goclaw("", "dora", &pending.sender_id, ""))
            .await
            .unwrap(),
    );
    assert_ne!(restart.pairing_code, pending.pairing_code);

    // Rejection.
    api.reject_pairing(
        &admin("default"),
        RejectPairingRequest {
            pairing_code: restart.pairing_code.clone(),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        api.pairing_status(&Principal::default(), status(&pending.sender_id))
            .await
            .unwrap()
            .status,
        "rejected"
    );
    assert!(
        pending_of(
            &h.connect(goclaw("", "", &pending.sender_id, ""))
                .await
                .unwrap()
        )
        .pairing_code
            != restart.pairing_code
    );
}

async fn pairing_codes_expire_and_are_limited_per_account(h: &Harness) {
    let api = h.api();
    let ask = |sender: &str, account: &str| RequestPairingRequest {
        sender_id: sender.into(),
        channel: "telegram".into(),
        chat_id: "chat-1".into(),
        account_id: account.into(),
    };
    let operator = principal("default", "op", &["operator.write"], "");
    let first = api
        .request_pairing(&operator, ask("s1", "acct"))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.expires_at_ms, h.now() + HOUR_MS);
    let same = api
        .request_pairing(&operator, ask("s1", "acct"))
        .await
        .unwrap();
    assert_eq!(
        (same.pairing_code.as_str(), same.created),
        (first.pairing_code.as_str(), false)
    );
    api.request_pairing(&operator, ask("s2", "acct"))
        .await
        .unwrap();
    api.request_pairing(&operator, ask("s3", "acct"))
        .await
        .unwrap();
    assert_code(
        api.request_pairing(&operator, ask("s4", "acct")).await,
        ErrorCode::ResourceExhausted,
    );
    // Another account has its own budget.
    api.request_pairing(&operator, ask("s4", "other"))
        .await
        .unwrap();
    assert_code(
        api.request_pairing(
            &principal("default", "r", &["operator.read"], ""),
            ask("s5", "x"),
        )
        .await,
        ErrorCode::Forbidden,
    );

    // After 60 minutes the codes are expired and the budget is free again.
    h.advance(HOUR_MS);
    let status = api
        .pairing_status(
            &Principal::default(),
            PairingStatusRequest {
                sender_id: "s1".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(status.status, "expired");
    let by_code = ApprovePairingRequest {
        pairing_code: first.pairing_code.clone(),
        ..Default::default()
    };
    assert_code(
        api.approve_pairing(&admin("default"), by_code).await,
        ErrorCode::NotFound,
    );
    let renewed = api
        .request_pairing(&operator, ask("s1", "acct"))
        .await
        .unwrap();
    assert!(renewed.created);
    assert_ne!(renewed.pairing_code, first.pairing_code);
    api.request_pairing(&operator, ask("s4", "acct"))
        .await
        .unwrap();
}

async fn api_keys_create_use_revoke_expire(h: &Harness) {
    let api = h.api();
    let created = api
        .create_api_key(&admin("default"), key_request(&["operator.write"]))
        .await
        .unwrap();
    let secret = created.secret.clone();
    assert!(secret.starts_with("clawgate_") && secret.len() == 41);
    assert!(secret[9..].bytes().all(|b| b.is_ascii_hexdigit()));
    let key = created.key.unwrap();
    assert!(secret.starts_with(&key.prefix) && key.prefix.len() < secret.len());
    assert_eq!(
        (key.tenant_id.as_str(), key.created_by.as_str()),
        ("default", "admin")
    );

    // Tenant and user come from the key (no owner: its creator), whatever is asked.
    let p = principal_of(
        &h.connect(goclaw(&secret, "carol", "", "elsewhere"))
            .await
            .unwrap(),
    );
    assert_eq!(
        (p.role.as_str(), p.user_id.as_str(), p.tenant_id.as_str()),
        ("operator", "admin", "default")
    );
    assert_eq!(p.scopes, strings(&["operator.write"]));
    let listed = api
        .list_api_keys(&admin("default"), Default::default())
        .await
        .unwrap()
        .keys;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at_ms, h.now());

    let viewer = api
        .create_api_key(&admin("default"), key_request(&["operator.read"]))
        .await
        .unwrap()
        .secret;
    assert_eq!(
        principal_of(&h.connect(goclaw(&viewer, "", "", "")).await.unwrap()).role,
        "viewer"
    );
    let admin_key = api
        .create_api_key(&admin("default"), key_request(&["operator.admin"]))
        .await
        .unwrap()
        .secret;
    assert_eq!(
        principal_of(
            &h.connect(goclaw(&admin_key, "alice", "", ""))
                .await
                .unwrap()
        )
        .role,
        "admin",
        "never owner"
    );
    let owned = CreateApiKeyRequest {
        owner_id: "erin".into(),
        ..key_request(&["operator.read"])
    };
    let owned = api
        .create_api_key(&admin("default"), owned)
        .await
        .unwrap()
        .secret;
    assert_eq!(
        principal_of(&h.connect(goclaw(&owned, "mallory", "", "")).await.unwrap()).user_id,
        "erin"
    );

    let revoked = api
        .revoke_api_key(
            &admin("default"),
            RevokeApiKeyRequest { id: key.id.clone() },
        )
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at_ms, h.now());
    assert_code(
        h.connect(goclaw(&secret, "carol", "", "")).await,
        ErrorCode::Unauthorized,
    );

    let expiring = CreateApiKeyRequest {
        expires_at_ms: h.now() + 1000,
        ..key_request(&["operator.read"])
    };
    let expiring = api
        .create_api_key(&admin("default"), expiring)
        .await
        .unwrap()
        .secret;
    principal_of(&h.connect(goclaw(&expiring, "", "", "")).await.unwrap());
    h.advance(1000);
    assert_code(
        h.connect(goclaw(&expiring, "", "", "")).await,
        ErrorCode::Unauthorized,
    );
    let past = CreateApiKeyRequest {
        expires_at_ms: h.now(),
        ..key_request(&["operator.read"])
    };
    assert_code(
        api.create_api_key(&admin("default"), past).await,
        ErrorCode::InvalidRequest,
    );
}

async fn api_keys_are_admin_only_and_tenant_bound(h: &Harness) {
    let api = h.api();
    let writer = principal("default", "w", &["operator.write", "operator.pairing"], "");
    let err: ServiceError = assert_code(
        api.create_api_key(&writer, key_request(&["operator.read"]))
            .await,
        ErrorCode::Forbidden,
    );
    assert_eq!(err.message, "missing scope: operator.admin");
    assert_code(
        api.list_api_keys(&writer, Default::default()).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        api.revoke_api_key(&writer, RevokeApiKeyRequest { id: "x".into() })
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(
        api.create_api_key(&admin("default"), key_request(&[]))
            .await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        api.create_api_key(&admin("default"), key_request(&["root"]))
            .await,
        ErrorCode::InvalidRequest,
    );

    // A key of tenant t2 always lands in t2.
    h.create_tenant("t2").await;
    let t2 = api
        .create_api_key(&admin("t2"), key_request(&["operator.read"]))
        .await
        .unwrap()
        .secret;
    assert_eq!(
        principal_of(&h.connect(goclaw(&t2, "", "", "default")).await.unwrap()).tenant_id,
        "t2"
    );
    // Every key belongs to its creator's tenant: the tenant admin of t2 lists
    // one key, the default tenant's admin none.
    assert_eq!(
        api.list_api_keys(&admin("t2"), Default::default())
            .await
            .unwrap()
            .keys
            .len(),
        1
    );
    assert_eq!(
        api.list_api_keys(&admin("default"), Default::default())
            .await
            .unwrap()
            .keys
            .len(),
        0
    );
}
