//! One behaviour suite for the session service, run three ways: in-process on
//! SQLite, in-process on PostgreSQL, and through the gRPC client and server on
//! PostgreSQL. Each test gets a fresh database of its own.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use clawgate_proto::session::{
    AppendMessageRequest, DeleteSessionRequest, EnsureSessionRequest, ListMessagesRequest,
    ListSessionsRequest, MessageStatus, PatchSessionRequest, SessionApi, ToolCallRecord,
};
use clawgate_proto::{ErrorCode, Principal};
use futures_util::future::join_all;
use support::{append, append_request, assert_code, ensure, get, messages, principal};

/// Generates `sqlite::NAME`, `postgres::NAME` and `grpc::NAME` for each behaviour.
macro_rules! behaviour_suite {
    ($($name:ident),* $(,)?) => {
        behaviour_suite!(@backend sqlite, sqlite, $($name),*);
        behaviour_suite!(@backend postgres, postgres, $($name),*);
        behaviour_suite!(@backend grpc, grpc, $($name),*);
    };
    (@backend $module:ident, $harness:ident, $($name:ident),*) => {
        mod $module {
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

behaviour_suite!(
    ensure_creates_once_and_get_finds_it,
    tenants_and_users_are_isolated,
    append_numbers_messages_and_updates_the_session,
    append_with_run_id_is_idempotent,
    tool_loop_rows_keep_their_calls_and_results,
    concurrent_appends_get_distinct_consecutive_seqs,
    soft_delete_hides_the_session_and_a_new_one_starts_fresh,
    list_sessions_orders_pages_and_filters,
    list_messages_returns_the_newest_oldest_first,
    patch_sets_the_label,
    invalid_input_is_rejected,
    a_principal_is_required,
);

async fn ensure_creates_once_and_get_finds_it(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let missing = api.get_session(&alice, get("main")).await;
    assert_code(missing, ErrorCode::NotFound);

    let created = api
        .ensure_session(
            &alice,
            EnsureSessionRequest {
                session_key: "main".into(),
                agent_id: "agent-1".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (created.tenant_id.as_str(), created.user_id.as_str()),
        ("t1", "alice")
    );
    assert_eq!(created.session_key, "main");
    assert_eq!(created.agent_id, "agent-1");
    assert_eq!(created.message_count, 0);

    // Concurrent ensures of one key all see the same single session.
    let again = join_all((0..10).map(|_| api.ensure_session(&alice, ensure("main")))).await;
    for session in again {
        assert_eq!(session.unwrap(), created);
    }
    assert_eq!(api.get_session(&alice, get("main")).await.unwrap(), created);
    let list = api
        .list_sessions(&alice, ListSessionsRequest::default())
        .await
        .unwrap();
    assert_eq!(list.total, 1);
}

async fn tenants_and_users_are_isolated(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let bob = principal("t1", "bob");
    let alice_elsewhere = principal("t2", "alice");
    append(api, &alice, "main", "user", "alice says hi").await;
    append(api, &alice, "only-alice", "user", "private").await;
    append(api, &bob, "main", "user", "bob says hi").await;
    append(api, &bob, "main", "assistant", "hello bob").await;

    // Same key, different owner: different sessions, each sees only its own.
    let seen = messages(api, &alice, "main").await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].content, "alice says hi");
    assert_eq!(seen[0].seq, 1);
    let seen = messages(api, &bob, "main").await;
    assert_eq!(
        seen.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["bob says hi", "hello bob"]
    );
    assert!(messages(api, &alice_elsewhere, "main").await.is_empty());
    assert!(messages(api, &bob, "only-alice").await.is_empty());

    assert_eq!(
        api.get_session(&bob, get("main"))
            .await
            .unwrap()
            .message_count,
        2
    );
    assert_code(
        api.get_session(&bob, get("only-alice")).await,
        ErrorCode::NotFound,
    );
    assert_code(
        api.get_session(&alice_elsewhere, get("main")).await,
        ErrorCode::NotFound,
    );

    let list = |who: Principal| async move {
        api.list_sessions(&who, ListSessionsRequest::default())
            .await
            .unwrap()
    };
    let alices = list(alice.clone()).await;
    assert_eq!(alices.total, 2);
    assert!(
        alices
            .sessions
            .iter()
            .all(|s| s.user_id == "alice" && s.tenant_id == "t1")
    );
    assert_eq!(list(bob.clone()).await.total, 1);
    assert_eq!(list(alice_elsewhere.clone()).await.total, 0);

    // Writes by one owner never touch another's session.
    let deleted = api
        .delete_session(
            &bob,
            DeleteSessionRequest {
                session_key: "only-alice".into(),
            },
        )
        .await
        .unwrap();
    assert!(!deleted.deleted);
    let patched = api
        .patch_session(
            &alice_elsewhere,
            PatchSessionRequest {
                session_key: "main".into(),
                label: Some("hijack".into()),
            },
        )
        .await;
    assert_code(patched, ErrorCode::NotFound);
    assert_eq!(
        api.get_session(&alice, get("main")).await.unwrap().label,
        ""
    );
    assert_eq!(messages(api, &alice, "only-alice").await.len(), 1);
}

async fn append_numbers_messages_and_updates_the_session(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let first = append(api, &alice, "main", "user", "  what is\n the time? ").await;
    assert_eq!(first.seq, 1);
    assert_eq!(first.role, "user");
    assert_eq!(first.status, MessageStatus::Complete as i32);
    assert_eq!(
        (first.tenant_id.as_str(), first.user_id.as_str()),
        ("t1", "alice")
    );
    let after_first = api.get_session(&alice, get("main")).await.unwrap();
    assert_eq!(after_first.message_count, 1);
    assert_eq!(after_first.last_message_preview, "what is the time?");

    let reply = api
        .append_message(
            &alice,
            AppendMessageRequest {
                status: MessageStatus::Aborted as i32,
                error: "aborted by user".into(),
                ..append_request("main", "assistant", "It is", "run-1")
            },
        )
        .await
        .unwrap();
    assert_eq!(reply.seq, 2);
    assert_eq!(reply.status, MessageStatus::Aborted as i32);
    assert_eq!(reply.error, "aborted by user");
    let tool = append(api, &alice, "main", "tool", "{\"clock\": \"12:00\"}").await;
    assert_eq!(tool.seq, 3);

    let session = api.get_session(&alice, get("main")).await.unwrap();
    assert_eq!(session.message_count, 3);
    // Tool output does not become the preview.
    assert_eq!(session.last_message_preview, "It is");
    assert!(session.updated_at_ms >= after_first.updated_at_ms);
    assert_eq!(
        messages(api, &alice, "main").await,
        vec![first, reply, tool]
    );
}

/// A tool loop's rows: one run, several assistant and tool rows told apart by
/// `part`, each idempotent, with their calls and results read back as written.
async fn tool_loop_rows_keep_their_calls_and_results(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    api.append_message(&alice, append_request("main", "user", "list", "run-1"))
        .await
        .unwrap();
    let call = ToolCallRecord {
        id: "c1".into(),
        name: "sessions_list".into(),
        arguments_json: r#"{"limit":2}"#.into(),
    };
    let step = AppendMessageRequest {
        tool_calls: vec![call.clone()],
        part: 0,
        ..append_request("main", "assistant", "", "run-1")
    };
    let result = AppendMessageRequest {
        tool_call_id: "c1".into(),
        tool_name: "sessions_list".into(),
        tool_error: true,
        part: 1,
        ..append_request("main", "tool", "no sessions", "run-1")
    };
    let last = AppendMessageRequest {
        part: 2,
        ..append_request("main", "assistant", "None yet.", "run-1")
    };
    for request in [&step, &result, &last, &step, &result] {
        api.append_message(&alice, request.clone()).await.unwrap();
    }
    let rows = messages(api, &alice, "main").await;
    assert_eq!(rows.len(), 4, "replays add nothing: {rows:?}");
    assert_eq!(rows[1].tool_calls, [call]);
    assert_eq!((rows[1].role.as_str(), rows[1].part), ("assistant", 0));
    assert_eq!(
        (
            rows[2].tool_call_id.as_str(),
            rows[2].tool_name.as_str(),
            rows[2].tool_error
        ),
        ("c1", "sessions_list", true)
    );
    assert_eq!((rows[3].content.as_str(), rows[3].part), ("None yet.", 2));
    // A step that only called tools leaves the preview to the turns with text.
    let session = api.get_session(&alice, get("main")).await.unwrap();
    assert_eq!(session.last_message_preview, "None yet.");
    // Tool data only where it belongs.
    let misplaced = AppendMessageRequest {
        tool_calls: vec![ToolCallRecord::default()],
        ..append_request("main", "user", "x", "")
    };
    assert_code(
        api.append_message(&alice, misplaced).await,
        ErrorCode::InvalidRequest,
    );
}

async fn append_with_run_id_is_idempotent(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let user = api
        .append_message(&alice, append_request("main", "user", "hello", "run-1"))
        .await
        .unwrap();
    let answer = api
        .append_message(&alice, append_request("main", "assistant", "hi!", "run-1"))
        .await
        .unwrap();
    assert_eq!((user.seq, answer.seq), (1, 2));

    // Replays return the stored row unchanged, even with other content.
    let replay = api
        .append_message(
            &alice,
            append_request("main", "assistant", "changed", "run-1"),
        )
        .await
        .unwrap();
    assert_eq!(replay, answer);
    let replays = join_all(
        (0..5).map(|_| api.append_message(&alice, append_request("main", "user", "x", "run-1"))),
    )
    .await;
    for replay in replays {
        assert_eq!(replay.unwrap(), user);
    }
    let session = api.get_session(&alice, get("main")).await.unwrap();
    assert_eq!(session.message_count, 2);
    assert_eq!(session.last_message_preview, "hi!");
    assert_eq!(messages(api, &alice, "main").await.len(), 2);

    // Without a run id every append is new; another user's run id is their own.
    append(api, &alice, "main", "user", "again").await;
    append(api, &alice, "main", "user", "again").await;
    let bob_row = api
        .append_message(
            &principal("t1", "bob"),
            append_request("main", "user", "b", "run-1"),
        )
        .await
        .unwrap();
    assert_eq!(bob_row.seq, 1);
    assert_eq!(messages(api, &alice, "main").await.len(), 4);
}

async fn concurrent_appends_get_distinct_consecutive_seqs(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let count = 40u64;
    // Half with distinct run ids, half without; plus duplicates of the run ids.
    let requests = (0..count).map(|i| {
        let run_id = if i % 2 == 0 {
            format!("run-{i}")
        } else {
            String::new()
        };
        append_request("busy", "user", &format!("message {i}"), &run_id)
    });
    let duplicates = (0..count)
        .step_by(4)
        .map(|i| append_request("busy", "user", "dup", &format!("run-{i}")));
    let results = join_all(
        requests
            .chain(duplicates)
            .map(|request| api.append_message(&alice, request)),
    )
    .await;
    for result in &results {
        assert!(result.is_ok(), "append failed: {result:?}");
    }

    let listed = messages(api, &alice, "busy").await;
    let seqs: Vec<u64> = listed.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=count).collect::<Vec<_>>());
    // Whichever of two appends with one run id came first is the stored row, and
    // both callers got that row back.
    let mut by_run = std::collections::HashMap::new();
    for stored in results.into_iter().map(Result::unwrap) {
        if !stored.run_id.is_empty() {
            let first = by_run
                .entry(stored.run_id.clone())
                .or_insert_with(|| stored.clone());
            assert_eq!(*first, stored);
        }
    }
    assert_eq!(by_run.len(), (count / 2) as usize);
    for stored in by_run.values() {
        assert!(listed.contains(stored));
    }
    let session = api.get_session(&alice, get("busy")).await.unwrap();
    assert_eq!(session.message_count, count);
}

async fn soft_delete_hides_the_session_and_a_new_one_starts_fresh(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    api.append_message(
        &alice,
        append_request("main", "user", "before delete", "run-1"),
    )
    .await
    .unwrap();
    append(api, &alice, "other", "user", "kept").await;
    let delete = || {
        api.delete_session(
            &alice,
            DeleteSessionRequest {
                session_key: "main".into(),
            },
        )
    };
    assert!(delete().await.unwrap().deleted);
    assert!(!delete().await.unwrap().deleted);

    assert_code(
        api.get_session(&alice, get("main")).await,
        ErrorCode::NotFound,
    );
    assert!(messages(api, &alice, "main").await.is_empty());
    let list = api
        .list_sessions(&alice, ListSessionsRequest::default())
        .await
        .unwrap();
    assert_eq!(list.total, 1);
    assert_eq!(list.sessions[0].session_key, "other");

    // The same key again is a new, empty session; numbering restarts.
    let fresh = api.ensure_session(&alice, ensure("main")).await.unwrap();
    assert_eq!(fresh.message_count, 0);
    assert_eq!(fresh.last_message_preview, "");
    // A run id used before the delete is new in the fresh session.
    let first = api
        .append_message(
            &alice,
            append_request("main", "user", "after delete", "run-1"),
        )
        .await
        .unwrap();
    assert_eq!(first.seq, 1);
    assert_eq!(first.content, "after delete");
    assert_eq!(messages(api, &alice, "main").await, vec![first]);
    assert_eq!(messages(api, &alice, "other").await.len(), 1);
}

async fn list_sessions_orders_pages_and_filters(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        let agent = if i % 2 == 0 { "even" } else { "odd" };
        api.ensure_session(
            &alice,
            EnsureSessionRequest {
                session_key: (*key).into(),
                agent_id: agent.into(),
            },
        )
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    // Touch "b": it becomes the most recently updated.
    append(api, &alice, "b", "user", "bump").await;

    let page = |limit, offset, agent_id: &str| {
        let request = ListSessionsRequest {
            limit,
            offset,
            agent_id: agent_id.into(),
            ..Default::default()
        };
        async { api.list_sessions(&alice, request).await.unwrap() }
    };
    let keys = |sessions: &[clawgate_proto::session::Session]| {
        sessions
            .iter()
            .map(|s| s.session_key.clone())
            .collect::<Vec<_>>()
    };
    let all = page(0, 0, "").await;
    assert_eq!(all.total, 5);
    assert_eq!(keys(&all.sessions), ["b", "e", "d", "c", "a"]);
    let second = page(2, 2, "").await;
    assert_eq!(second.total, 5);
    assert_eq!(keys(&second.sessions), ["d", "c"]);
    let past_end = page(10, 10, "").await;
    assert!(past_end.sessions.is_empty());
    assert_eq!(past_end.total, 5);
    let odd = page(5000, 0, "odd").await;
    assert_eq!(odd.total, 2);
    assert_eq!(keys(&odd.sessions), ["b", "d"]);
}

async fn list_messages_returns_the_newest_oldest_first(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    for i in 1..=205 {
        append(api, &alice, "long", "user", &format!("m{i}")).await;
    }
    let default = messages(api, &alice, "long").await;
    assert_eq!(default.len(), 200);
    assert_eq!(default[0].seq, 6);
    assert_eq!(default[199].seq, 205);
    let list = |limit| {
        api.list_messages(
            &alice,
            ListMessagesRequest {
                session_key: "long".into(),
                limit,
            },
        )
    };
    let last3 = list(3).await.unwrap().messages;
    assert_eq!(
        last3.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["m203", "m204", "m205"]
    );
    assert_eq!(list(5000).await.unwrap().messages.len(), 205);
    assert!(messages(api, &alice, "never-created").await.is_empty());
}

async fn patch_sets_the_label(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let patch = |key: &str, label: Option<&str>| {
        let request = PatchSessionRequest {
            session_key: key.into(),
            label: label.map(Into::into),
        };
        api.patch_session(&alice, request)
    };
    assert_code(patch("main", Some("x")).await, ErrorCode::NotFound);
    api.ensure_session(&alice, ensure("main")).await.unwrap();
    assert_eq!(
        patch("main", Some("Trip plans")).await.unwrap().label,
        "Trip plans"
    );
    assert_eq!(patch("main", None).await.unwrap().label, "Trip plans");
    assert_eq!(
        api.get_session(&alice, get("main")).await.unwrap().label,
        "Trip plans"
    );
    assert_eq!(patch("main", Some("")).await.unwrap().label, "");
    let too_long = "l".repeat(513);
    assert_code(
        patch("main", Some(&too_long)).await,
        ErrorCode::InvalidRequest,
    );
}

async fn invalid_input_is_rejected(api: &dyn SessionApi) {
    let alice = principal("t1", "alice");
    let long_key = "k".repeat(513);
    let message = assert_code(
        api.ensure_session(&alice, ensure("")).await,
        ErrorCode::InvalidRequest,
    );
    assert!(message.contains("session_key"), "{message}");
    assert_code(
        api.get_session(&alice, get(&long_key)).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        api.list_messages(
            &alice,
            ListMessagesRequest {
                session_key: String::new(),
                limit: 1,
            },
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    // The longest allowed key works.
    api.ensure_session(&alice, ensure(&"k".repeat(512)))
        .await
        .unwrap();

    let bad = |request: AppendMessageRequest| api.append_message(&alice, request);
    let message = assert_code(
        bad(append_request("main", "robot", "x", "")).await,
        ErrorCode::InvalidRequest,
    );
    assert!(message.contains("role"), "{message}");
    let huge = "x".repeat(1024 * 1024 + 1);
    let message = assert_code(
        bad(append_request("main", "user", &huge, "")).await,
        ErrorCode::InvalidRequest,
    );
    assert!(message.contains("content"), "{message}");
    assert_code(
        bad(append_request("main", "user", "nul\0", "")).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        bad(append_request(&long_key, "user", "x", "")).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        bad(AppendMessageRequest {
            status: 99,
            ..append_request("main", "user", "x", "")
        })
        .await,
        ErrorCode::InvalidRequest,
    );
    // Nothing was stored by the rejected calls; the largest content is accepted.
    assert_code(
        api.get_session(&alice, get("main")).await,
        ErrorCode::NotFound,
    );
    let largest = "y".repeat(1024 * 1024);
    let stored = bad(append_request("main", "user", &largest, ""))
        .await
        .unwrap();
    assert_eq!(stored.content.len(), 1024 * 1024);
}

async fn a_principal_is_required(api: &dyn SessionApi) {
    let nobody = Principal::default();
    let tenant_only = Principal {
        tenant_id: "t1".into(),
        ..Default::default()
    };
    for who in [&nobody, &tenant_only] {
        assert_code(
            api.ensure_session(who, ensure("main")).await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.get_session(who, get("main")).await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.list_sessions(who, ListSessionsRequest::default()).await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.patch_session(
                who,
                PatchSessionRequest {
                    session_key: "main".into(),
                    label: None,
                },
            )
            .await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.delete_session(
                who,
                DeleteSessionRequest {
                    session_key: "main".into(),
                },
            )
            .await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.append_message(who, append_request("main", "user", "x", ""))
                .await,
            ErrorCode::Unauthorized,
        );
        assert_code(
            api.list_messages(
                who,
                ListMessagesRequest {
                    session_key: "main".into(),
                    limit: 0,
                },
            )
            .await,
            ErrorCode::Unauthorized,
        );
    }
    // Nothing leaked into a real user's view.
    let alice = principal("t1", "alice");
    let list = api
        .list_sessions(&alice, ListSessionsRequest::default())
        .await
        .unwrap();
    assert_eq!(list.total, 0);
}
