//! The OpenClaw session methods and session events against the embedded
//! gateway (real services, a mock model): `sessions.subscribe` and
//! `sessions.messages.subscribe` with `sessions.changed` / `session.message`
//! (v3 and v4 shapes), `sessions.list` filters and true `hasActiveRun`,
//! `chat.history` v4 fields, and `sessions.describe` / `get` / `preview` /
//! `create` / `patch` / `reset` / `delete`, with bad params.

mod edge_support;

use std::time::Duration;

use clawgate_tests::mock_model::Script;
use clawgate_tests::ws::WsClient;
use edge_support::{gateway, ok, openclaw, openclaw_v4, refused, until_chat_terminal};
use serde_json::{Value, json};

const READ: &[&str] = &["operator.read"];
const RW: &[&str] = &["operator.read", "operator.write"];
const ADMIN: &[&str] = &["operator.admin"];

/// Every session event of `frames`, as `(event, reason or phase, session key)`.
fn session_events(frames: &[Value]) -> Vec<(String, String, String)> {
    frames
        .iter()
        .filter(|f| f["event"] == "sessions.changed" || f["event"] == "session.message")
        .map(|f| {
            let p = &f["payload"];
            let what = p["reason"]
                .as_str()
                .or(p["phase"].as_str())
                .or(p["message"]["role"].as_str())
                .unwrap_or_default();
            (
                f["event"].as_str().unwrap_or_default().to_owned(),
                what.to_owned(),
                p["sessionKey"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn ev(event: &str, what: &str, key: &str) -> (String, String, String) {
    (event.to_owned(), what.to_owned(), key.to_owned())
}

async fn send(client: &mut WsClient, key: &str, message: &str) -> anyhow::Result<String> {
    let run_id = uuid::Uuid::new_v4().to_string();
    let res = client
        .request(
            "chat.send",
            json!({"sessionKey": key, "message": message, "idempotencyKey": run_id}),
        )
        .await?;
    ok(&res)?;
    Ok(run_id)
}

#[tokio::test]
async fn a_subscribed_v4_client_sees_its_sessions_change_and_their_messages() -> anyhow::Result<()>
{
    let (gw, _model) = gateway(Script::text("hello back")).await?;
    let (mut watcher, hello) = openclaw_v4(&gw.ws_url, &gw.gateway_token, READ).await?;
    for event in ["sessions.changed", "session.message"] {
        assert!(
            hello["features"]["events"]
                .as_array()
                .is_some_and(|e| e.contains(&json!(event))),
            "{event} not advertised: {hello}"
        );
    }
    let (mut writer, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let res = watcher.request("sessions.subscribe", json!({})).await?;
    assert_eq!(ok(&res)?, &json!({"subscribed": true}));
    // v4 has no sessions.unsubscribe (not offered: admin only, then unknown).
    let res = watcher.request("sessions.unsubscribe", json!({})).await?;
    assert_eq!(refused(&res), "missing scope: operator.admin");

    let run_id = send(&mut writer, "tui-test", "hello from tui").await?;
    let frames = until_chat_terminal(&mut watcher, &run_id).await?;
    let mut frames = frames;
    frames.extend(watcher.drain(Duration::from_millis(300)).await);
    let key = "agent:main:tui-test";
    let seen = session_events(&frames);
    for expected in [
        ev("sessions.changed", "create", key),
        ev("session.message", "user", key),
        ev("sessions.changed", "start", key),
        ev("session.message", "assistant", key),
        ev("sessions.changed", "end", key),
    ] {
        assert!(seen.contains(&expected), "{expected:?} not in {seen:?}");
    }
    let user = frames
        .iter()
        .find(|f| f["event"] == "session.message" && f["payload"]["message"]["role"] == "user")
        .expect("the user turn");
    let payload = &user["payload"];
    assert_eq!(payload["message"]["content"], "hello from tui");
    assert_eq!(payload["messageSeq"], 1);
    assert_eq!(payload["message"]["__openclaw"]["seq"], 1);
    assert!(payload["messageId"].is_string());
    assert_eq!(payload["session"]["key"], key);
    assert!(payload["session"]["sessionId"].is_string());
    assert_eq!(payload["sessionId"], payload["session"]["sessionId"]);
    // v4 numbers targeted events too: the connection's seq stays contiguous.
    let seqs: Vec<u64> = frames.iter().filter_map(|f| f["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "seq not contiguous: {seqs:?}"
    );
    let assistant = frames
        .iter()
        .find(|f| f["event"] == "session.message" && f["payload"]["message"]["role"] == "assistant")
        .expect("the reply");
    assert_eq!(
        assistant["payload"]["message"]["content"],
        json!([{"type": "text", "text": "hello back"}])
    );
    Ok(())
}

#[tokio::test]
async fn message_subscriptions_follow_one_session_and_v3_gets_flat_rows() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("ok")).await?;
    let (mut watcher, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;
    let (mut writer, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;
    let res = watcher
        .request("sessions.messages.subscribe", json!({"key": "Followed"}))
        .await?;
    assert_eq!(
        ok(&res)?,
        &json!({"subscribed": true, "key": "agent:main:followed"})
    );
    let res = watcher
        .request("sessions.messages.subscribe", json!({"key": 3}))
        .await?;
    assert!(refused(&res).starts_with("invalid sessions.messages.subscribe params"));

    let other = send(&mut writer, "other", "not followed").await?;
    until_chat_terminal(&mut watcher, &other).await?;
    let followed = send(&mut writer, "followed", "followed").await?;
    let mut frames = until_chat_terminal(&mut watcher, &followed).await?;
    frames.extend(watcher.drain(Duration::from_millis(300)).await);
    let seen = session_events(&frames);
    let key = "agent:main:followed";
    assert!(
        seen.contains(&ev("session.message", "user", key)),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|(event, _, k)| event == "session.message" && k == key),
        "only the followed session's messages: {seen:?}"
    );
    let user = frames
        .iter()
        .find(|f| f["event"] == "session.message")
        .expect("a message");
    // v3: text parts, the row flattened, no `session` object, no seq.
    assert_eq!(
        user["payload"]["message"]["content"],
        json!([{"type": "text", "text": "followed"}])
    );
    assert!(user["payload"].get("session").is_none(), "{user}");
    assert!(user.get("seq").is_none(), "{user}");
    assert!(user["payload"]["sessionId"].is_string());

    let res = watcher
        .request("sessions.messages.unsubscribe", json!({"key": "followed"}))
        .await?;
    assert_eq!(ok(&res)?["subscribed"], false);
    let again = send(&mut writer, "followed", "again").await?;
    let frames = until_chat_terminal(&mut watcher, &again).await?;
    assert!(session_events(&frames).is_empty(), "{frames:?}");

    // An unsubscribed connection gets none.
    let res = watcher.request("sessions.unsubscribe", json!({})).await?;
    assert_eq!(ok(&res)?, &json!({"subscribed": false}));
    Ok(())
}

#[tokio::test]
async fn listings_filter_and_tell_which_sessions_run() -> anyhow::Result<()> {
    let script = Script::tokens(["a", "b", "c"]).with_delay(Duration::from_millis(400));
    let (gw, _model) = gateway(script).await?;
    let (mut admin, _) = openclaw_v4(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    for key in ["alpha", "beta", "gamma_1"] {
        let res = admin
            .request(
                "sessions.create",
                json!({"key": key, "label": format!("L {key}")}),
            )
            .await?;
        let created = ok(&res)?;
        assert_eq!(created["key"], format!("agent:main:{key}"));
        assert_eq!(created["runStarted"], false);
        assert!(created["sessionId"].is_string());
        assert_eq!(created["entry"]["label"], format!("L {key}"));
    }
    let keys = |payload: &Value| -> Vec<String> {
        let mut keys: Vec<String> = payload["sessions"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| r["key"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let res = admin
        .request("sessions.list", json!({"search": "ALP"}))
        .await?;
    assert_eq!(keys(ok(&res)?), ["agent:main:alpha"]);
    // A `_` searched for is a literal, not a wildcard.
    let res = admin
        .request("sessions.list", json!({"search": "a_1"}))
        .await?;
    assert_eq!(keys(ok(&res)?), ["agent:main:gamma_1"]);
    let res = admin
        .request("sessions.list", json!({"label": "L beta"}))
        .await?;
    assert_eq!(keys(ok(&res)?), ["agent:main:beta"]);
    let res = admin
        .request("sessions.list", json!({"spawnedBy": "agent:main:alpha"}))
        .await?;
    assert_eq!(ok(&res)?["count"], 0);
    let res = admin
        .request("sessions.list", json!({"limit": 2, "activeMinutes": 5}))
        .await?;
    let page = ok(&res)?;
    assert_eq!(
        (page["count"].as_u64(), page["totalCount"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(page["hasMore"], true);
    assert_eq!(page["nextOffset"], 2);
    assert_eq!(page["owners"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["defaults"]["modelSelectionTarget"], "session");
    let res = admin
        .request("sessions.list", json!({"limit": 2, "offset": 2}))
        .await?;
    assert_eq!(ok(&res)?["count"], 1);
    assert_eq!(ok(&res)?["nextOffset"], Value::Null);
    for (params, why) in [
        (json!({"sortBy": "x"}), "unexpected"),
        (json!({"includeDerivedTitles": true}), "not supported"),
        (json!({"activeMinutes": 0}), "activeMinutes"),
        (json!({"search": 5}), "search"),
    ] {
        let res = admin.request("sessions.list", params.clone()).await?;
        let message = refused(&res);
        assert!(message.contains(why), "{params}: {message}");
    }

    // A run in flight shows in the listing, the description and the history.
    let run_id = send(&mut admin, "beta", "go").await?;
    let res = admin
        .request("sessions.list", json!({"label": "L beta"}))
        .await?;
    let row = &ok(&res)?["sessions"][0];
    assert_eq!(row["hasActiveRun"], true, "{row}");
    assert_eq!(row["status"], "running");
    let res = admin
        .request("chat.history", json!({"sessionKey": "beta", "limit": 10}))
        .await?;
    let history = ok(&res)?;
    assert_eq!(history["sessionInfo"]["activeRunIds"], json!([run_id]));
    assert_eq!(history["totalMessages"], 1);
    assert_eq!(history["pendingInputs"], json!({"items": [], "total": 0}));
    assert_eq!(history["messages"][0]["content"], "go");
    until_chat_terminal(&mut admin, &run_id).await?;
    let res = admin
        .request(
            "sessions.describe",
            json!({"key": "beta", "includeLastMessage": true}),
        )
        .await?;
    let described = &ok(&res)?["session"];
    assert_eq!(described["hasActiveRun"], false, "{described}");
    assert_eq!(described["label"], "L beta");
    assert!(described["lastMessagePreview"].is_string(), "{described}");
    let res = admin
        .request("sessions.describe", json!({"key": "nothing-here"}))
        .await?;
    assert_eq!(ok(&res)?, &json!({"session": null}));
    let res = admin
        .request("chat.history", json!({"sessionKey": "nothing-here"}))
        .await?;
    let empty = ok(&res)?;
    assert_eq!(empty["sessionInfo"]["updatedAt"], Value::Null);
    assert_eq!(empty["totalMessages"], 0);
    Ok(())
}

#[tokio::test]
async fn edits_reset_delete_and_preview_sessions() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("reply")).await?;
    let (mut admin, _) = openclaw_v4(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    let (mut watcher, _) = openclaw(&gw.ws_url, &gw.gateway_token, READ).await?;
    ok(&watcher.request("sessions.subscribe", json!({})).await?)?;

    let run_id = send(&mut admin, "work", "first").await?;
    until_chat_terminal(&mut admin, &run_id).await?;
    let res = admin
        .request("sessions.patch", json!({"key": "work", "label": "Work"}))
        .await?;
    let patched = ok(&res)?;
    assert_eq!(patched["entry"]["label"], "Work");
    let changed = watcher
        .event_where(|f| f["event"] == "sessions.changed" && f["payload"]["reason"] == "patch")
        .await?;
    assert_eq!(changed["payload"]["label"], "Work");
    let res = admin
        .request("sessions.patch", json!({"key": "work", "model": "gpt-x"}))
        .await?;
    assert!(refused(&res).contains("model is not a session setting"));

    let res = admin
        .request("sessions.get", json!({"key": "work"}))
        .await?;
    let messages = ok(&res)?["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 2, "{messages:?}");
    let res = admin
        .request(
            "sessions.preview",
            json!({"keys": ["work", "never", "work"], "limit": 1, "maxChars": 20}),
        )
        .await?;
    let previews = ok(&res)?["previews"].clone();
    assert_eq!(previews.as_array().map(Vec::len), Some(2), "{previews}");
    assert_eq!(previews[0]["status"], "ok");
    assert_eq!(
        previews[0]["items"],
        json!([{"role": "assistant", "text": "reply"}])
    );
    assert_eq!(previews[1]["status"], "missing");

    let res = admin
        .request("sessions.describe", json!({"key": "work"}))
        .await?;
    let before = ok(&res)?["session"]["sessionId"].clone();
    let res = admin
        .request("sessions.reset", json!({"key": "work", "reason": "new"}))
        .await?;
    let reset = ok(&res)?;
    assert_ne!(reset["entry"]["sessionId"], before);
    assert_eq!(reset["entry"]["label"], "Work");
    assert_eq!(reset["entry"]["messageCount"], 0);
    watcher
        .event_where(|f| f["event"] == "sessions.changed" && f["payload"]["reason"] == "new")
        .await?;

    let res = admin
        .request("sessions.delete", json!({"key": "main"}))
        .await?;
    assert!(refused(&res).contains("Cannot delete the main session"));
    let res = admin
        .request("sessions.delete", json!({"key": "work"}))
        .await?;
    assert_eq!(
        ok(&res)?,
        &json!({"ok": true, "key": "agent:main:work", "deleted": true, "archived": []})
    );
    watcher
        .event_where(|f| f["event"] == "sessions.changed" && f["payload"]["reason"] == "delete")
        .await?;
    let res = admin
        .request("sessions.delete", json!({"key": "work"}))
        .await?;
    assert_eq!(ok(&res)?["deleted"], false);

    // Edits need admin; a read-only connection may only look.
    let res = watcher
        .request("sessions.patch", json!({"key": "x", "label": "y"}))
        .await?;
    assert_eq!(refused(&res), "missing scope: operator.admin");
    let res = watcher.request("sessions.create", json!({})).await?;
    assert_eq!(refused(&res), "missing scope: operator.write");
    Ok(())
}
