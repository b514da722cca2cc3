//! Tenant and user isolation through every RPC, on SQLite, on PostgreSQL (as
//! the app role, under row-level security) and through gRPC.
//!
//! Two tenants hold the same user ids (two operators, an admin and an owner),
//! each user the same session keys. No read, write, listing, count or error
//! crosses a tenant; operators see only their own rows; admins and owners list
//! their whole tenant, while calls by session key stay in their own namespace.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use std::collections::BTreeSet;

use clawgate_proto::session::{
    AppendMessageRequest, DeleteSessionRequest, EnsureSessionRequest, ListSessionsRequest,
    PatchSessionRequest, Session, SessionApi,
};
use clawgate_proto::{ErrorCode, Principal};
use support::{Harness, admin, assert_code, get, messages, operator, owner};

const TENANTS: [&str; 2] = ["tenant-alpha", "tenant-beta"];
const OPERATORS: [&str; 2] = ["ann", "ben"];
const ADMIN: &str = "ada";
const OWNER: &str = "oz";
const USERS: [&str; 4] = ["ann", "ben", ADMIN, OWNER];

fn who(tenant: &str, user: &str) -> Principal {
    match user {
        ADMIN => admin(tenant, user),
        OWNER => owner(tenant, user),
        _ => operator(tenant, user),
    }
}

fn everyone() -> Vec<Principal> {
    TENANTS
        .iter()
        .flat_map(|tenant| USERS.iter().map(|user| who(tenant, user)))
        .collect()
}

/// What `p` wrote into its session `key`: tenant and user are in every marker.
fn marker(p: &Principal, key: &str) -> String {
    format!("{}/{}/{key}", p.tenant_id, p.user_id)
}

fn solo(user: &str) -> String {
    format!("solo-{user}")
}

/// Every user of both tenants gets "shared" and "solo-<user>", each with one
/// message and a label naming its owner.
async fn seed(api: &dyn SessionApi) {
    for p in everyone() {
        for (key, agent) in [
            ("shared".to_owned(), "agent-shared"),
            (solo(&p.user_id), "agent-solo"),
        ] {
            api.append_message(
                &p,
                AppendMessageRequest {
                    session_key: key.clone(),
                    role: "user".into(),
                    content: marker(&p, &key),
                    agent_id: agent.into(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
            api.patch_session(
                &p,
                PatchSessionRequest {
                    session_key: key.clone(),
                    label: Some(marker(&p, &key)),
                },
            )
            .await
            .unwrap();
        }
    }
}

/// Fails unless `text` (an error message) names nothing but the caller's input.
fn assert_names_nobody(text: &str, caller: &Principal) {
    for tenant in TENANTS {
        assert!(
            tenant == caller.tenant_id || !text.contains(tenant),
            "{text:?} names another tenant"
        );
    }
    assert!(!text.contains('/'), "{text:?} carries stored content");
}

fn owned_by(sessions: &[Session], p: &Principal) -> bool {
    sessions
        .iter()
        .all(|s| s.tenant_id == p.tenant_id && s.user_id == p.user_id)
}

async fn reads_stay_with_their_owner(api: &dyn SessionApi) {
    seed(api).await;
    for p in everyone() {
        for user in USERS {
            let key = solo(user);
            if user == p.user_id {
                let session = api.get_session(&p, get(&key)).await.unwrap();
                assert_eq!(
                    (session.tenant_id.as_str(), session.user_id.as_str()),
                    (p.tenant_id.as_str(), user)
                );
                assert_eq!(session.label, marker(&p, &key));
                let seen = messages(api, &p, &key).await;
                assert_eq!(seen.len(), 1);
                assert_eq!(seen[0].content, marker(&p, &key));
            } else {
                // Another user's key, also for admins and owners: not theirs.
                let error = assert_code(api.get_session(&p, get(&key)).await, ErrorCode::NotFound);
                assert_names_nobody(&error, &p);
                assert!(messages(api, &p, &key).await.is_empty());
            }
        }
        let shared = api.get_session(&p, get("shared")).await.unwrap();
        assert_eq!(shared.label, marker(&p, "shared"));
        assert_eq!(
            (shared.tenant_id.as_str(), shared.user_id.as_str()),
            (p.tenant_id.as_str(), p.user_id.as_str())
        );
        let seen = messages(api, &p, "shared").await;
        assert_eq!(
            seen.iter().map(|m| m.content.clone()).collect::<Vec<_>>(),
            [marker(&p, "shared")]
        );
        assert!(
            seen.iter()
                .all(|m| m.tenant_id == p.tenant_id && m.user_id == p.user_id)
        );
    }
}

async fn listings_cover_the_user_or_the_tenant(api: &dyn SessionApi) {
    seed(api).await;
    let list = |p: Principal, limit: u32, offset: u32, agent_id: &'static str| async move {
        api.list_sessions(
            &p,
            ListSessionsRequest {
                limit,
                offset,
                agent_id: agent_id.into(),
                ..Default::default()
            },
        )
        .await
        .unwrap()
    };
    for tenant in TENANTS {
        for user in OPERATORS {
            let p = who(tenant, user);
            let mine = list(p.clone(), 0, 0, "").await;
            assert_eq!(mine.total, 2);
            assert!(owned_by(&mine.sessions, &p));
            let keys: BTreeSet<_> = mine
                .sessions
                .iter()
                .map(|s| s.session_key.clone())
                .collect();
            assert_eq!(keys, BTreeSet::from(["shared".to_owned(), solo(user)]));
            let filtered = list(p.clone(), 0, 0, "agent-solo").await;
            assert_eq!(filtered.total, 1);
            assert_eq!(filtered.sessions[0].session_key, solo(user));
        }
        for user in [ADMIN, OWNER] {
            let p = who(tenant, user);
            let all = list(p.clone(), 0, 0, "").await;
            assert_eq!(all.total, 8, "{user} of {tenant}");
            assert!(all.sessions.iter().all(|s| s.tenant_id == tenant));
            let owners: BTreeSet<_> = all
                .sessions
                .iter()
                .map(|s| (s.user_id.clone(), s.session_key.clone()))
                .collect();
            let expected: BTreeSet<_> = USERS
                .iter()
                .flat_map(|u| {
                    [
                        (u.to_string(), "shared".to_owned()),
                        (u.to_string(), solo(u)),
                    ]
                })
                .collect();
            assert_eq!(owners, expected);
            // Each entry is the stored session of the user it names.
            for s in &all.sessions {
                assert_eq!(s.label, format!("{tenant}/{}/{}", s.user_id, s.session_key));
            }
            let solos = list(p.clone(), 0, 0, "agent-solo").await;
            assert_eq!(solos.total, 4);
            let last = list(p.clone(), 3, 6, "").await;
            assert_eq!((last.sessions.len(), last.total), (2, 8));
        }
    }
}

async fn writes_stay_with_their_owner(api: &dyn SessionApi) {
    seed(api).await;
    let beta_admin = who(TENANTS[1], ADMIN);
    let beta_ann = who(TENANTS[1], "ann");
    let alpha_owner = who(TENANTS[0], OWNER);

    // By key, writes reach only the caller's own namespace, whatever its access.
    for p in [beta_admin.clone(), beta_ann.clone(), alpha_owner.clone()] {
        for user in USERS.iter().filter(|u| **u != p.user_id) {
            let key = solo(user);
            let patched = api
                .patch_session(
                    &p,
                    PatchSessionRequest {
                        session_key: key.clone(),
                        label: Some("hijacked".into()),
                    },
                )
                .await;
            assert_names_nobody(&assert_code(patched, ErrorCode::NotFound), &p);
            let deleted = api
                .delete_session(
                    &p,
                    DeleteSessionRequest {
                        session_key: key.clone(),
                    },
                )
                .await
                .unwrap();
            assert!(!deleted.deleted);
        }
    }
    // An admin appending to another user's key starts a session of its own.
    let own = api
        .append_message(
            &beta_admin,
            AppendMessageRequest {
                session_key: solo("ann"),
                role: "user".into(),
                content: "admin's own".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (own.tenant_id.as_str(), own.user_id.as_str(), own.seq),
        (TENANTS[1], ADMIN, 1)
    );
    let ensured = api
        .ensure_session(
            &beta_ann,
            EnsureSessionRequest {
                session_key: solo("ben"),
                agent_id: String::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (ensured.user_id.as_str(), ensured.message_count),
        ("ann", 0)
    );
    // Label and delete of "shared" by the beta admin touch its own only.
    api.patch_session(
        &beta_admin,
        PatchSessionRequest {
            session_key: "shared".into(),
            label: Some("admin relabel".into()),
        },
    )
    .await
    .unwrap();
    let deleted = api
        .delete_session(
            &beta_admin,
            DeleteSessionRequest {
                session_key: "shared".into(),
            },
        )
        .await
        .unwrap();
    assert!(deleted.deleted);

    // Everybody else's sessions and transcripts are as seeded.
    for p in everyone() {
        for key in ["shared".to_owned(), solo(&p.user_id)] {
            if p == beta_admin && key == "shared" {
                assert_code(api.get_session(&p, get(&key)).await, ErrorCode::NotFound);
                continue;
            }
            assert_eq!(
                api.get_session(&p, get(&key)).await.unwrap().label,
                marker(&p, &key)
            );
            let seen = messages(api, &p, &key).await;
            assert_eq!(
                seen.iter().map(|m| m.content.clone()).collect::<Vec<_>>(),
                [marker(&p, &key)]
            );
        }
    }
    // The tenant listings count the new sessions in their own tenant only.
    let total = |p: Principal| async move {
        api.list_sessions(&p, ListSessionsRequest::default())
            .await
            .unwrap()
            .total
    };
    assert_eq!(total(who(TENANTS[0], ADMIN)).await, 8);
    // Beta: 8 seeded - 1 deleted + admin's "solo-ann" + ann's "solo-ben".
    assert_eq!(total(who(TENANTS[1], OWNER)).await, 9);
    assert_eq!(total(beta_ann).await, 3);
}

macro_rules! isolation_suite {
    ($($name:ident),* $(,)?) => {
        isolation_suite!(@backend sqlite, $($name),*);
        isolation_suite!(@backend postgres, $($name),*);
        isolation_suite!(@backend grpc, $($name),*);
    };
    (@backend $harness:ident, $($name:ident),*) => {
        mod $harness {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let harness = crate::Harness::$harness().await;
                    super::$name(harness.api()).await;
                }
            )*
        }
    };
}

isolation_suite!(
    reads_stay_with_their_owner,
    listings_cover_the_user_or_the_tenant,
    writes_stay_with_their_owner,
);

/// Behind the API: every stored row is where its writer's marker says, and no
/// message names another tenant or user than its session.
#[tokio::test(flavor = "multi_thread")]
async fn stored_rows_match_their_sessions_on_both_backends() {
    for harness in [Harness::sqlite().await, Harness::postgres().await] {
        seed(harness.api()).await;
        let db = harness.owner_database().await;
        let stray: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM messages m JOIN sessions s ON s.id = m.session_id \
             WHERE m.tenant_id <> s.tenant_id OR m.user_id <> s.user_id \
                OR m.content <> s.tenant_id || '/' || s.user_id || '/' || s.session_key",
        )
        .fetch_one(db.pool())
        .await
        .unwrap();
        assert_eq!(stray, 0);
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(rows, 16);
        db.close().await;
    }
}
