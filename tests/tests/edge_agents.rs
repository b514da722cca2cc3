//! The tenant's agents through the WebSocket, against the embedded gateway
//! with a mock model: admins create, change and delete them
//! (`agents.create|update|delete`), every reader sees them
//! (`agents.list`, `agent.identity.get`, goclaw `agents.list`), a session
//! key's agent answers its runs with its own instructions and model, and a
//! session key of an agent the tenant lacks gets a clear error.

mod edge_support;

use clawgate_tests::mock_model::Script;
use edge_support::{gateway, ok, openclaw, refused, until_chat_terminal};
use serde_json::json;

const ADMIN: &[&str] = &["operator.admin"];
const RW: &[&str] = &["operator.read", "operator.write"];

#[tokio::test]
async fn admins_manage_agents_and_a_session_keys_agent_answers() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("Done.")).await?;
    let (mut admin, _) = openclaw(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    let (mut user, _) = openclaw(&gw.ws_url, &gw.gateway_token, RW).await?;

    // Only the default agent at first.
    let listed = user.request("agents.list", json!({})).await?;
    assert_eq!(
        ok(&listed)?["agents"],
        json!([{"id": "main", "kind": "agent"}])
    );

    let created = admin
        .request(
            "agents.create",
            json!({
                "name": "Code Helper", "workspace": "projects/code", "model": "coder-model",
                "emoji": "🛠", "avatar": "https://example.com/a.png",
                "systemPrompt": "You are the code helper.", "tools": ["web_fetch"],
            }),
        )
        .await?;
    assert_eq!(
        ok(&created)?,
        &json!({
            "ok": true, "agentId": "code-helper", "name": "Code Helper",
            "workspace": "projects/code", "model": "coder-model",
        })
    );
    let again = admin
        .request(
            "agents.create",
            json!({"name": "code helper", "workspace": ""}),
        )
        .await?;
    assert_eq!(again["error"]["code"], "INVALID_REQUEST", "{again}");
    assert!(refused(&again).contains("exists"), "{again}");
    // Writers are no admins.
    let denied = user
        .request("agents.create", json!({"name": "Mine", "workspace": ""}))
        .await?;
    assert_eq!(refused(&denied), "missing scope: operator.admin");

    let listed = user.request("agents.list", json!({})).await?;
    assert_eq!(
        ok(&listed)?["agents"],
        json!([
            {"id": "main", "kind": "agent"},
            {
                "id": "code-helper", "kind": "agent", "name": "Code Helper",
                "identity": {"name": "Code Helper", "emoji": "🛠", "avatar": "https://example.com/a.png"},
                "workspace": "projects/code",
                "model": {"primary": "coder-model", "fallbacks": []},
            },
        ])
    );
    let identity = user
        .request(
            "agent.identity.get",
            json!({"sessionKey": "agent:code-helper:x"}),
        )
        .await?;
    assert_eq!(
        ok(&identity)?,
        &json!({
            "agentId": "code-helper", "name": "Code Helper", "emoji": "🛠",
            "avatar": "https://example.com/a.png", "avatarStatus": "remote",
        })
    );
    let main = user.request("agent.identity.get", json!({})).await?;
    assert_eq!(
        ok(&main)?,
        &json!({"agentId": "main", "avatarStatus": "none"})
    );

    // A run in the agent's session: its instructions first, its model.
    let sent = user
        .request(
            "chat.send",
            json!({"sessionKey": "agent:code-helper:s1", "message": "hi", "idempotencyKey": "r1"}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    let frames = until_chat_terminal(&mut user, &run_id).await?;
    let last = frames.last().cloned().unwrap_or_default();
    assert_eq!(last["payload"]["state"], "final", "{frames:#?}");
    let requests = model.requests();
    let request = requests.last().expect("the model was called");
    assert_eq!(request.model(), Some("coder-model"));
    assert_eq!(
        request.messages(),
        [
            ("system".to_owned(), "You are the code helper.".to_owned()),
            ("user".to_owned(), "hi".to_owned()),
        ]
    );

    // A change applies to the next run; the default agent uses the provider's model.
    let updated = admin
        .request(
            "agents.update",
            json!({"agentId": "code-helper", "systemPrompt": "Be brief.", "model": ""}),
        )
        .await?;
    assert_eq!(
        ok(&updated)?,
        &json!({"ok": true, "agentId": "code-helper"})
    );
    let sent = user
        .request(
            "chat.send",
            json!({"sessionKey": "agent:code-helper:s1", "message": "again", "idempotencyKey": "r2"}),
        )
        .await?;
    let run_id = ok(&sent)?["runId"].as_str().unwrap_or_default().to_owned();
    until_chat_terminal(&mut user, &run_id).await?;
    let requests = model.requests();
    let request = requests.last().expect("the model was called");
    assert_eq!(request.model(), Some("mock-model"));
    assert_eq!(
        request.messages().first(),
        Some(&("system".to_owned(), "Be brief.".to_owned()))
    );

    // A key of an agent the tenant lacks: refused, nothing sent to the model.
    let calls = model.requests().len();
    let unknown = user
        .request(
            "chat.send",
            json!({"sessionKey": "agent:ghost:s", "message": "hi", "idempotencyKey": "r3"}),
        )
        .await?;
    assert_eq!(unknown["error"]["code"], "INVALID_REQUEST", "{unknown}");
    assert_eq!(refused(&unknown), "unknown agent: ghost");
    let unknown = user
        .request("agent.identity.get", json!({"agentId": "ghost"}))
        .await?;
    assert_eq!(refused(&unknown), "unknown agent: ghost");
    assert_eq!(model.requests().len(), calls);

    // Deleting: the default agent stays, another goes.
    let refusal = admin
        .request("agents.delete", json!({"agentId": "main"}))
        .await?;
    assert_eq!(refused(&refusal), "the default agent cannot be deleted");
    let deleted = admin
        .request(
            "agents.delete",
            json!({"agentId": "code-helper", "deleteFiles": true}),
        )
        .await?;
    assert_eq!(
        ok(&deleted)?,
        &json!({"ok": true, "agentId": "code-helper", "removedBindings": 0})
    );
    let gone = admin
        .request("agents.delete", json!({"agentId": "code-helper"}))
        .await?;
    assert_eq!(refused(&gone), "unknown agent: code-helper");
    let listed = user.request("agents.list", json!({})).await?;
    assert_eq!(
        ok(&listed)?["agents"],
        json!([{"id": "main", "kind": "agent"}])
    );
    Ok(())
}

#[tokio::test]
async fn bad_agent_settings_are_refused_with_the_reason() -> anyhow::Result<()> {
    let (gw, _model) = gateway(Script::text("ok")).await?;
    let (mut admin, _) = openclaw(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    for (params, expected) in [
        (json!({"name": "x", "workspace": "../up"}), "workspace"),
        (json!({"name": "x", "workspace": "/abs"}), "workspace"),
        (
            json!({"name": "x", "workspace": "", "avatar": "file:///etc/passwd"}),
            "avatar",
        ),
        (
            json!({"name": "x", "workspace": "", "tools": ["Bad Tool"]}),
            "invalid tool name",
        ),
        (
            json!({"name": "x", "workspace": "", "timeoutMs": 1}),
            "timeout_ms",
        ),
        (
            json!({"name": "x", "workspace": "", "maxToolSteps": 1000}),
            "max_tool_steps",
        ),
        (json!({"name": "!!", "workspace": ""}), "gives no agent id"),
        (
            json!({"name": "x", "workspace": "", "extra": true}),
            "'extra'",
        ),
    ] {
        let res = admin.request("agents.create", params.clone()).await?;
        assert_eq!(res["error"]["code"], "INVALID_REQUEST", "{params}: {res}");
        assert!(refused(&res).contains(expected), "{params}: {res}");
    }
    let listed = admin.request("agents.list", json!({})).await?;
    assert_eq!(ok(&listed)?["agents"].as_array().map(Vec::len), Some(1));
    Ok(())
}

#[tokio::test]
async fn goclaw_admins_manage_agents_in_snake_case() -> anyhow::Result<()> {
    let (gw, model) = gateway(Script::text("Done.")).await?;
    let mut admin = clawgate_tests::ws::WsClient::connect(&gw.ws_url).await?;
    let hello = admin.goclaw_handshake(&gw.gateway_token, "boss").await?;
    assert_eq!(hello["role"], "admin", "{hello}");
    let created = admin
        .request(
            "agents.create",
            json!({"name": "Go Helper", "workspace": "", "system_prompt": "You help in Go.",
                   "max_tool_steps": 2}),
        )
        .await?;
    assert_eq!(
        ok(&created)?,
        &json!({"ok": true, "agent_id": "go-helper", "name": "Go Helper", "workspace": ""})
    );
    let listed = admin.request("agents.list", json!({})).await?;
    assert!(listed.to_string().contains("go-helper"), "{listed}");
    let identity = admin
        .request("agent.identity.get", json!({"agentId": "go-helper"}))
        .await?;
    assert_eq!(ok(&identity)?["agentId"], "go-helper", "{identity}");
    assert_eq!(ok(&identity)?["name"], "Go Helper", "{identity}");
    let updated = admin
        .request(
            "agents.update",
            json!({"agent_id": "go-helper", "system_prompt": "You help in Rust."}),
        )
        .await?;
    assert_eq!(ok(&updated)?, &json!({"ok": true, "agent_id": "go-helper"}));
    // Its runs use its instructions.
    let id = admin
        .send_request(
            "chat.send",
            json!({"sessionKey": "agent:go-helper:main", "message": "hi", "idempotencyKey": "g-1"}),
        )
        .await?;
    let answer = admin.response(&id).await?;
    assert_eq!(answer["ok"], true, "{answer}");
    let system = model
        .requests()
        .last()
        .and_then(|r| r.messages().into_iter().find(|(role, _)| role == "system"))
        .map(|(_, text)| text);
    assert_eq!(system.as_deref(), Some("You help in Rust."));
    // Operators are no admins.
    let mut carol = admin.operator_socket(&gw.ws_url, "carol").await?;
    let denied = carol
        .request("agents.delete", json!({"agent_id": "go-helper"}))
        .await?;
    assert_eq!(denied["ok"], false, "{denied}");
    let deleted = admin
        .request("agents.delete", json!({"agent_id": "go-helper"}))
        .await?;
    assert_eq!(
        ok(&deleted)?,
        &json!({"ok": true, "agent_id": "go-helper", "removed_bindings": 0})
    );
    Ok(())
}
