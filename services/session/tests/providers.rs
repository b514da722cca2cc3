//! The model providers of a tenant, run three ways (SQLite, PostgreSQL under
//! row-level security, gRPC on PostgreSQL): admins put and delete them,
//! members read them, bad settings are refused, nothing crosses tenants.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use clawgate_proto::session::{
    DeleteProviderRequest, ListProvidersRequest, PutProviderRequest, SessionApi, TenantProvider,
};
use clawgate_proto::{ErrorCode, Principal};
use support::{admin, assert_code, operator};

macro_rules! provider_suite {
    ($($name:ident),* $(,)?) => {
        provider_suite!(@backend sqlite, $($name),*);
        provider_suite!(@backend postgres, $($name),*);
        provider_suite!(@backend grpc, $($name),*);
    };
    (@backend $harness:ident, $($name:ident),*) => {
        mod $harness {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let harness = crate::support::Harness::$harness().await;
                    super::$name(harness.api()).await;
                }
            )*
        }
    };
}

provider_suite!(
    admins_put_and_delete_providers_members_read_them,
    bad_providers_are_refused,
    providers_stay_in_their_tenant,
);

fn provider(id: &str, models: &[&str]) -> TenantProvider {
    TenantProvider {
        provider_id: id.into(),
        kind: "openai".into(),
        base_url: "https://api.example.com/v1/".into(),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        api_key_secret: "EXAMPLE_KEY".into(),
        ..Default::default()
    }
}

async fn put(
    api: &dyn SessionApi,
    who: &Principal,
    provider: TenantProvider,
) -> Result<TenantProvider, clawgate_proto::ServiceError> {
    api.put_provider(
        who,
        PutProviderRequest {
            provider: Some(provider),
        },
    )
    .await
}

async fn ids(api: &dyn SessionApi, who: &Principal) -> Vec<String> {
    api.list_providers(who, ListProvidersRequest {})
        .await
        .unwrap()
        .providers
        .into_iter()
        .map(|p| p.provider_id)
        .collect()
}

async fn admins_put_and_delete_providers_members_read_them(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    let member = operator("t1", "alice");
    let stored = put(api, &boss, provider("zeta", &["z-1"])).await.unwrap();
    assert_eq!(stored.tenant_id, "t1");
    assert_eq!(stored.base_url, "https://api.example.com/v1");
    assert!(stored.created_at_ms > 0 && stored.updated_at_ms >= stored.created_at_ms);
    put(api, &boss, provider("alpha", &["a-1", "a-2"]))
        .await
        .unwrap();
    assert_eq!(ids(api, &member).await, ["alpha", "zeta"]);
    // A put replaces the provider of its id, keeping when it was created.
    let replaced = put(api, &boss, provider("zeta", &["z-2"])).await.unwrap();
    assert_eq!(replaced.models, ["z-2"]);
    assert_eq!(replaced.created_at_ms, stored.created_at_ms);
    // Members read but do not change.
    assert_code(
        put(api, &member, provider("mine", &["m"])).await,
        ErrorCode::Forbidden,
    );
    assert_code(
        api.delete_provider(
            &member,
            DeleteProviderRequest {
                provider_id: "zeta".into(),
            },
        )
        .await,
        ErrorCode::Forbidden,
    );
    let deleted = api
        .delete_provider(
            &boss,
            DeleteProviderRequest {
                provider_id: "zeta".into(),
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted);
    assert_code(
        api.delete_provider(
            &boss,
            DeleteProviderRequest {
                provider_id: "zeta".into(),
            },
        )
        .await,
        ErrorCode::NotFound,
    );
    assert_eq!(ids(api, &member).await, ["alpha"]);
    assert_code(
        api.list_providers(&Principal::default(), ListProvidersRequest {})
            .await,
        ErrorCode::Unauthorized,
    );
}

async fn bad_providers_are_refused(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    let bad: Vec<TenantProvider> = vec![
        provider("Bad Id", &["m"]),
        provider("", &["m"]),
        TenantProvider {
            kind: "cohere".into(),
            ..provider("p", &["m"])
        },
        TenantProvider {
            base_url: "ftp://host".into(),
            ..provider("p", &["m"])
        },
        TenantProvider {
            base_url: "https://user:secret@host/v1".into(),
            ..provider("p", &["m"])
        },
        TenantProvider {
            base_url: "https://host/v1?key=x".into(),
            ..provider("p", &["m"])
        },
        provider("p", &[]),
        provider("p", &["a/b"]),
        provider("p", &["dup", "dup"]),
        provider("p", &["has space"]),
        TenantProvider {
            api_key_secret: "not a name".into(),
            ..provider("p", &["m"])
        },
    ];
    for candidate in bad {
        let shown = format!("{candidate:?}");
        assert_code(put(api, &boss, candidate).await, ErrorCode::InvalidRequest);
        assert!(ids(api, &boss).await.is_empty(), "{shown} was stored");
    }
    assert_code(
        api.put_provider(&boss, PutProviderRequest { provider: None })
            .await,
        ErrorCode::InvalidRequest,
    );
    for index in 0..clawgate_session::providers::MAX_PROVIDERS {
        put(api, &boss, provider(&format!("p{index}"), &["m"]))
            .await
            .unwrap();
    }
    assert_code(
        put(api, &boss, provider("one-too-many", &["m"])).await,
        ErrorCode::InvalidRequest,
    );
}

async fn providers_stay_in_their_tenant(api: &dyn SessionApi) {
    let a = admin("ta", "boss");
    let b = admin("tb", "boss");
    put(api, &a, provider("own", &["m"])).await.unwrap();
    assert!(ids(api, &b).await.is_empty());
    assert_code(
        api.delete_provider(
            &b,
            DeleteProviderRequest {
                provider_id: "own".into(),
            },
        )
        .await,
        ErrorCode::NotFound,
    );
    // The same id in another tenant is another provider.
    let theirs = put(api, &b, provider("own", &["other"])).await.unwrap();
    assert_eq!(theirs.tenant_id, "tb");
    let ours = api
        .list_providers(&a, ListProvidersRequest {})
        .await
        .unwrap()
        .providers;
    assert_eq!(ours.len(), 1);
    assert_eq!(
        (ours[0].tenant_id.as_str(), ours[0].models[0].as_str()),
        ("ta", "m")
    );
}
