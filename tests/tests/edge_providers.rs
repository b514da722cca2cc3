//! A tenant's own model providers through the WebSocket: an admin stores the
//! API key as a tenant secret and a provider naming it; the tenant's runs
//! then call that provider with that key (never the gateway's configured
//! model), `models.list` shows its models, an agent fails over from one of
//! the tenant's providers to another, bad settings are refused, and deleting
//! the providers brings the gateway's own model back.

mod edge_support;

use clawgate_tests::mock_model::{MockModel, Script};
use edge_support::{gateway, ok, openclaw, until_chat_terminal};
use serde_json::{Value, json};

const ADMIN: &[&str] = &["operator.admin"];

fn model_ids(listed: &Value) -> Vec<String> {
    listed["models"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            format!(
                "{}/{}",
                m["provider"].as_str().unwrap_or(""),
                m["id"].as_str().unwrap_or("")
            )
        })
        .collect()
}

async fn reply(
    client: &mut clawgate_tests::ws::WsClient,
    key: &str,
    session: &str,
) -> anyhow::Result<Value> {
    let sent = client
        .request(
            "chat.send",
            json!({"sessionKey": session, "message": "hello", "idempotencyKey": key}),
        )
        .await?;
    ok(&sent)?;
    let frames = until_chat_terminal(client, key).await?;
    Ok(frames.last().cloned().unwrap_or_default())
}

fn text(frame: &Value) -> &str {
    frame["payload"]["message"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test]
async fn a_tenants_own_providers_serve_its_runs_with_its_key() -> anyhow::Result<()> {
    let (gw, global) = gateway(Script::text("from the gateway's model")).await?;
    let own = MockModel::start(Script::text("from the tenant's provider")).await?;
    let backup = MockModel::start(Script::text("from the backup provider")).await?;
    let (mut admin, _) = openclaw(&gw.ws_url, &gw.gateway_token, ADMIN).await?;

    // Before: the gateway's configured model.
    let before = admin.request("models.list", json!({})).await?;
    assert_eq!(
        model_ids(ok(&before)?),
        ["127.0.0.1/mock-model"],
        "{before}"
    );

    let secret = admin
        .request(
            "secrets.set",
            json!({"name": "OWN_KEY", "value": "sk-tenant-own-123"}),
        )
        .await?;
    ok(&secret)?;
    let set = admin
        .request(
            "providers.set",
            json!({"id": "own", "kind": "openai", "baseUrl": format!("{}/", own.base_url()),
                   "models": ["own-model", "own-big"], "apiKeySecret": "OWN_KEY"}),
        )
        .await?;
    let stored = ok(&set)?;
    assert_eq!(
        stored["baseUrl"],
        own.base_url(),
        "trailing slash trimmed: {stored}"
    );
    assert!(!set.to_string().contains("sk-tenant-own-123"), "{set}");
    let listed = admin.request("providers.list", json!({})).await?;
    assert_eq!(ok(&listed)?["providers"][0]["id"], "own", "{listed}");
    let models = admin.request("models.list", json!({})).await?;
    assert_eq!(
        model_ids(ok(&models)?),
        ["own/own-model", "own/own-big"],
        "{models}"
    );

    // A run calls the tenant's provider, with the tenant's key, its first model.
    let done = reply(&mut admin, "p1", "main").await?;
    assert_eq!(done["payload"]["state"], "final", "{done}");
    assert_eq!(text(&done), "from the tenant's provider");
    let sent = own.requests();
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].authorization.as_deref(),
        Some("Bearer sk-tenant-own-123")
    );
    assert_eq!(sent[0].model(), Some("own-model"));
    assert!(
        global.requests().is_empty(),
        "the gateway's model was called"
    );

    // Failover across the tenant's providers: its first fails, the backup answers.
    let backup_set = admin
        .request(
            "providers.set",
            json!({"id": "backup", "kind": "openai", "baseUrl": backup.base_url(),
                   "models": ["b-model"]}),
        )
        .await?;
    ok(&backup_set)?;
    own.set_script(Script::http_error(503));
    let updated = admin
        .request(
            "agents.update",
            json!({"agentId": "main", "model": "own-big", "fallbacks": ["backup/b-model"]}),
        )
        .await?;
    ok(&updated)?;
    let done = reply(&mut admin, "p2", "main").await?;
    assert_eq!(text(&done), "from the backup provider", "{done}");
    assert_eq!(
        own.requests()
            .last()
            .and_then(|r| r.model().map(str::to_owned))
            .as_deref(),
        Some("own-big")
    );
    assert_eq!(backup.requests()[0].model(), Some("b-model"));
    assert_eq!(
        backup.requests()[0].authorization,
        None,
        "no key secret, no key"
    );

    // Bad settings are refused and change nothing.
    for bad in [
        json!({"id": "x", "kind": "openai", "baseUrl": "ftp://host/v1", "models": ["m"]}),
        json!({"id": "x", "kind": "openai", "baseUrl": "http://user:pw@host/v1", "models": ["m"]}),
        json!({"id": "x", "kind": "openai", "baseUrl": "http://host/v1", "models": []}),
        json!({"id": "x", "kind": "openai", "baseUrl": "http://host/v1", "models": ["a/b"]}),
        json!({"id": "Bad Id", "kind": "openai", "baseUrl": "http://host/v1", "models": ["m"]}),
        json!({"id": "x", "kind": "cohere", "baseUrl": "http://host/v1", "models": ["m"]}),
        json!({"id": "x", "kind": "openai", "baseUrl": "http://host/v1", "models": ["m"], "apiKey": "sk"}),
    ] {
        let refused = admin.request("providers.set", bad.clone()).await?;
        assert_eq!(
            refused["error"]["code"], "INVALID_REQUEST",
            "{bad} → {refused}"
        );
    }
    // A writer is no admin.
    let (mut writer, _) = openclaw(
        &gw.ws_url,
        &gw.gateway_token,
        &["operator.read", "operator.write"],
    )
    .await?;
    let denied = writer.request("providers.list", json!({})).await?;
    assert_eq!(denied["ok"], false, "{denied}");

    // Without providers of its own the tenant is back on the gateway's model.
    for id in ["own", "backup"] {
        let deleted = admin.request("providers.delete", json!({"id": id})).await?;
        assert_eq!(ok(&deleted)?["deleted"], true, "{deleted}");
    }
    let again = admin
        .request("providers.delete", json!({"id": "own"}))
        .await?;
    assert_eq!(again["ok"], false, "{again}");
    let reset = admin
        .request(
            "agents.update",
            json!({"agentId": "main", "model": "", "fallbacks": []}),
        )
        .await?;
    ok(&reset)?;
    let done = reply(&mut admin, "p3", "main").await?;
    assert_eq!(text(&done), "from the gateway's model", "{done}");
    Ok(())
}

#[tokio::test]
async fn a_provider_whose_key_secret_is_missing_fails_the_run_clearly() -> anyhow::Result<()> {
    let (gw, _global) = gateway(Script::text("unused")).await?;
    let own = MockModel::start(Script::text("unused")).await?;
    let (mut admin, _) = openclaw(&gw.ws_url, &gw.gateway_token, ADMIN).await?;
    let set = admin
        .request(
            "providers.set",
            json!({"id": "own", "kind": "openai", "baseUrl": own.base_url(),
                   "models": ["m"], "apiKeySecret": "NOT_SET"}),
        )
        .await?;
    ok(&set)?;
    let done = reply(&mut admin, "k1", "main").await?;
    assert_eq!(done["payload"]["state"], "error", "{done}");
    let message = done["payload"]["errorMessage"].as_str().unwrap_or_default();
    assert!(message.contains("NOT_SET"), "{done}");
    assert!(own.requests().is_empty(), "called without its key");
    Ok(())
}
