//! Tenant secrets, on SQLite and PostgreSQL (as the app role): sealed at rest,
//! opened only with the right key and in the right tenant, never shown by an
//! RPC or in `Debug` output, managed by admins of their tenant only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use base64::Engine as _;
use clawgate_auth::keyring::Keyring;
use clawgate_auth::{AuthConfig, MAX_SECRET_VALUE_BYTES};
use clawgate_proto::ErrorCode;
use clawgate_proto::auth::{AuthApi, DeleteSecretRequest, RevealSecretRequest, SetSecretRequest};
use clawgate_proto::principal::ROLE_RUNNER;
use sqlx::Row as _;
use support::{Harness, admin, assert_code, config, keyring, member, owner};

behaviour_suite!(
    secrets_are_sealed_at_rest,
    secret_rpcs_follow_the_access_rules,
    only_the_runner_reveals_a_secret,
);

const NAME: &str = "OPENAI_API_KEY";
const VALUE: &str = "sk-live-0123456789abcdef-PLAINTEXT-MARKER";

fn with_keyring(keyring: Option<Keyring>) -> AuthConfig {
    AuthConfig {
        keyring,
        ..config(false)
    }
}

fn set(name: &str, value: &str) -> SetSecretRequest {
    SetSecretRequest {
        name: name.into(),
        value: value.into(),
    }
}

/// The stored (key id, ciphertext) of `tenant`'s secret, read as the owner role.
async fn stored(h: &Harness, tenant: &str, name: &str) -> (String, String) {
    let row =
        sqlx::query("SELECT key_id, ciphertext FROM secrets WHERE tenant_id = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .fetch_one(h.db.pool())
            .await
            .unwrap();
    (row.get("key_id"), row.get("ciphertext"))
}

async fn secrets_are_sealed_at_rest(h: &Harness) {
    let service = h.service(with_keyring(Some(keyring(1))));
    let info = service
        .set_secret(&admin("acme"), set(NAME, VALUE))
        .await
        .unwrap();
    assert_eq!(info.name, NAME);
    assert_eq!(info.key_id, keyring(1).active_key_id());
    assert_eq!(info.created_at_ms, h.now());

    // Stored encrypted: neither the value nor any encoding of it is in the row.
    let (key_id, ciphertext) = stored(h, "acme", NAME).await;
    assert_eq!(key_id, info.key_id);
    assert_ne!(ciphertext, VALUE);
    assert!(!ciphertext.contains(VALUE));
    let b64 = base64::engine::general_purpose::STANDARD;
    assert!(!ciphertext.contains(&b64.encode(VALUE)));
    let bytes = b64.decode(&ciphertext).unwrap();
    assert!(
        !bytes
            .windows(VALUE.len())
            .any(|window| window == VALUE.as_bytes())
    );
    assert!(
        bytes.len() >= VALUE.len() + 12 + 16,
        "nonce ‖ ciphertext ‖ tag"
    );

    // Opens with its key, in its tenant.
    assert_eq!(
        service.open_secret("acme", NAME).await.unwrap().as_deref(),
        Some(VALUE)
    );
    assert_eq!(service.open_secret("acme", "MISSING").await.unwrap(), None);
    assert_eq!(service.open_secret("bolt", NAME).await.unwrap(), None);

    // Another key does not open it: an error, never garbage.
    let stranger = h.service(with_keyring(Some(keyring(2))));
    let err = assert_code(
        stranger.open_secret("acme", NAME).await,
        ErrorCode::FailedPrecondition,
    );
    assert!(err.message.contains("CLAWGATE_ENCRYPTION_KEY"));
    assert!(!err.message.contains(VALUE));
    // A rotated keyring (new key first, old kept) still opens it and seals anew.
    let rotated = Keyring::from_keys(&[[2; 32], [1; 32]]).unwrap();
    let rotating = h.service(with_keyring(Some(rotated.clone())));
    assert_eq!(
        rotating.open_secret("acme", NAME).await.unwrap().as_deref(),
        Some(VALUE)
    );
    // A ciphertext copied to another tenant does not open there.
    sqlx::query(
        "INSERT INTO secrets (tenant_id, name, key_id, ciphertext, created_at, updated_at) \
         SELECT 'bolt', name, key_id, ciphertext, created_at, updated_at FROM secrets \
         WHERE tenant_id = 'acme' AND name = $1",
    )
    .bind(NAME)
    .execute(h.db.pool())
    .await
    .unwrap();
    assert!(service.open_secret("bolt", NAME).await.is_err());

    // Never listed, never printed.
    let list = service
        .list_secrets(&admin("acme"), Default::default())
        .await
        .unwrap();
    assert_eq!(list.secrets.len(), 1);
    assert_eq!(list.secrets[0].name, NAME);
    for printed in [
        format!("{list:?}"),
        format!("{info:?}"),
        format!("{:?}", set(NAME, VALUE)),
        format!("{service:?}"),
        format!("{rotated:?}"),
    ] {
        assert!(!printed.contains(VALUE), "{printed}");
    }

    // Overwriting re-seals (with the active key of the service that writes).
    h.advance(1000);
    let again = rotating
        .set_secret(&admin("acme"), set(NAME, "second value"))
        .await
        .unwrap();
    assert_eq!(again.key_id, rotated.active_key_id());
    assert_eq!(
        (again.created_at_ms, again.updated_at_ms),
        (info.created_at_ms, h.now())
    );
    assert_eq!(
        rotating.open_secret("acme", NAME).await.unwrap().as_deref(),
        Some("second value")
    );
    assert!(
        service.open_secret("acme", NAME).await.is_err(),
        "old keyring lacks the new key"
    );

    // Without a keyring: no sealing, no opening; listing and deleting still work.
    let keyless = h.service(with_keyring(None));
    let err = assert_code(
        keyless.set_secret(&admin("acme"), set("OTHER", "x")).await,
        ErrorCode::FailedPrecondition,
    );
    assert!(
        err.message.contains("CLAWGATE_ENCRYPTION_KEY"),
        "{}",
        err.message
    );
    assert_code(
        keyless.open_secret("acme", NAME).await,
        ErrorCode::FailedPrecondition,
    );
    assert_eq!(
        keyless
            .list_secrets(&admin("acme"), Default::default())
            .await
            .unwrap()
            .secrets
            .len(),
        1
    );
    let deleted = keyless
        .delete_secret(&admin("acme"), DeleteSecretRequest { name: NAME.into() })
        .await
        .unwrap();
    assert!(deleted.deleted);
}

async fn secret_rpcs_follow_the_access_rules(h: &Harness) {
    let service = h.service(with_keyring(Some(keyring(7))));
    let api: &dyn AuthApi = &service;
    // Operators (and viewers) neither set, list nor delete.
    for caller in [
        member("acme", "o", "operator"),
        member("acme", "v", "viewer"),
        support::principal("acme", "o", &["operator.write", "operator.pairing"], ""),
    ] {
        assert_code(
            api.set_secret(&caller, set("A", "x")).await,
            ErrorCode::Forbidden,
        );
        assert_code(
            api.list_secrets(&caller, Default::default()).await,
            ErrorCode::Forbidden,
        );
        assert_code(
            api.delete_secret(&caller, DeleteSecretRequest { name: "A".into() })
                .await,
            ErrorCode::Forbidden,
        );
    }
    // Names and sizes.
    for bad in ["", "a/b", "with space", &"n".repeat(65)] {
        assert_code(
            api.set_secret(&admin("acme"), set(bad, "x")).await,
            ErrorCode::InvalidRequest,
        );
    }
    let largest = "v".repeat(MAX_SECRET_VALUE_BYTES);
    api.set_secret(&admin("acme"), set("BIG_VALUE", &largest))
        .await
        .unwrap();
    assert_eq!(
        service
            .open_secret("acme", "BIG_VALUE")
            .await
            .unwrap()
            .as_deref(),
        Some(largest.as_str())
    );
    assert_code(
        api.set_secret(&admin("acme"), set("BIG_VALUE", &format!("{largest}v")))
            .await,
        ErrorCode::InvalidRequest,
    );

    // Tenants: the same name in two tenants are two secrets; neither sees,
    // lists, counts or deletes the other's.
    api.set_secret(&admin("acme"), set("TOKEN", "acme-token"))
        .await
        .unwrap();
    api.set_secret(&owner("bolt"), set("TOKEN", "bolt-token"))
        .await
        .unwrap();
    let names = |tenant: &'static str| async move {
        api.list_secrets(&admin(tenant), Default::default())
            .await
            .unwrap()
            .secrets
            .into_iter()
            .map(|s| s.name)
            .collect::<Vec<_>>()
    };
    assert_eq!(names("acme").await, ["BIG_VALUE", "TOKEN"]);
    assert_eq!(names("bolt").await, ["TOKEN"]);
    let gone = api
        .delete_secret(
            &admin("bolt"),
            DeleteSecretRequest {
                name: "BIG_VALUE".into(),
            },
        )
        .await
        .unwrap();
    let never = api
        .delete_secret(
            &admin("bolt"),
            DeleteSecretRequest {
                name: "never".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(gone, never);
    assert!(!gone.deleted);
    assert_eq!(
        service
            .open_secret("acme", "TOKEN")
            .await
            .unwrap()
            .as_deref(),
        Some("acme-token")
    );
    assert_eq!(
        service
            .open_secret("bolt", "TOKEN")
            .await
            .unwrap()
            .as_deref(),
        Some("bolt-token")
    );
    let deleted = api
        .delete_secret(
            &admin("acme"),
            DeleteSecretRequest {
                name: "TOKEN".into(),
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted);
    assert_eq!(names("acme").await, ["BIG_VALUE"]);
    assert_eq!(service.open_secret("acme", "TOKEN").await.unwrap(), None);
    assert_eq!(names("bolt").await, ["TOKEN"]);
}

/// `RevealSecret` answers the runner's principal, for its own tenant only;
/// no client principal (not even an owner's) gets a value.
async fn only_the_runner_reveals_a_secret(h: &Harness) {
    let service = h.service(with_keyring(Some(keyring(1))));
    service
        .set_secret(&admin("acme"), set(NAME, VALUE))
        .await
        .unwrap();
    let reveal = |name: &str| RevealSecretRequest { name: name.into() };
    let runner = |tenant: &str| clawgate_proto::Principal {
        tenant_id: tenant.into(),
        user_id: "runner".into(),
        role: ROLE_RUNNER.into(),
        ..Default::default()
    };
    let revealed = service
        .reveal_secret(&runner("acme"), reveal(NAME))
        .await
        .unwrap();
    assert!(revealed.found);
    assert_eq!(revealed.value, VALUE);
    let other = service
        .reveal_secret(&runner("bolt"), reveal(NAME))
        .await
        .unwrap();
    assert!(
        !other.found && other.value.is_empty(),
        "another tenant's secret"
    );
    let missing = service
        .reveal_secret(&runner("acme"), reveal("NOPE"))
        .await
        .unwrap();
    assert!(!missing.found);
    for who in [
        admin("acme"),
        owner("acme"),
        member("acme", "bob", "operator"),
    ] {
        let refused = assert_code(
            service.reveal_secret(&who, reveal(NAME)).await,
            ErrorCode::Forbidden,
        );
        assert!(!refused.message.contains(VALUE), "{refused:?}");
    }
}
