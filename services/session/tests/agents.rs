//! The agents of a tenant, run three ways (SQLite, PostgreSQL, gRPC on
//! PostgreSQL): the default agent always there, admins create, change and
//! delete agents, members read them, nothing crosses tenants, bad settings are
//! refused with what is wrong, concurrent changes all apply.

#![allow(clippy::unwrap_used)] // Tests fail loudly.

mod support;

use clawgate_proto::session::{
    Agent, AgentSettings, AllowExecRequest, CreateAgentRequest, DeleteAgentRequest,
    GetAgentRequest, ListAgentsRequest, SessionApi, StringList, UpdateAgentRequest,
};
use clawgate_proto::{ErrorCode, Principal};
use clawgate_session::agents::{DEFAULT_MAX_TOOL_STEPS, DEFAULT_TIMEOUT_MS};
use futures_util::future::join_all;
use support::{admin, assert_code, operator, owner};

macro_rules! agent_suite {
    ($($name:ident),* $(,)?) => {
        agent_suite!(@backend sqlite, $($name),*);
        agent_suite!(@backend postgres, $($name),*);
        agent_suite!(@backend grpc, $($name),*);
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

agent_suite!(
    the_default_agent_always_exists,
    admins_create_change_and_delete_agents,
    members_read_but_do_not_change,
    agents_stay_in_their_tenant,
    bad_settings_are_refused,
    concurrent_changes_all_apply,
    allow_always_adds_a_command_once,
);

fn names(items: &[&str]) -> Option<StringList> {
    Some(StringList {
        items: items.iter().map(|s| (*s).to_owned()).collect(),
    })
}

fn create(id: &str, settings: AgentSettings) -> CreateAgentRequest {
    CreateAgentRequest {
        agent_id: id.into(),
        settings: Some(settings),
    }
}

fn update(id: &str, settings: AgentSettings) -> UpdateAgentRequest {
    UpdateAgentRequest {
        agent_id: id.into(),
        settings: Some(settings),
    }
}

async fn get(
    api: &dyn SessionApi,
    who: &Principal,
    id: &str,
) -> Result<Agent, clawgate_proto::ServiceError> {
    api.get_agent(
        who,
        GetAgentRequest {
            agent_id: id.into(),
        },
    )
    .await
}

async fn ids(api: &dyn SessionApi, who: &Principal) -> Vec<String> {
    api.list_agents(who, ListAgentsRequest {})
        .await
        .unwrap()
        .agents
        .into_iter()
        .map(|a| a.agent_id)
        .collect()
}

async fn delete(
    api: &dyn SessionApi,
    who: &Principal,
    id: &str,
) -> Result<clawgate_proto::session::DeleteAgentResponse, clawgate_proto::ServiceError> {
    api.delete_agent(
        who,
        DeleteAgentRequest {
            agent_id: id.into(),
        },
    )
    .await
}

async fn the_default_agent_always_exists(api: &dyn SessionApi) {
    let ann = operator("t1", "ann");
    let listed = api.list_agents(&ann, ListAgentsRequest {}).await.unwrap();
    assert_eq!(listed.default_agent_id, "main");
    assert_eq!(listed.agents.len(), 1);
    let main = &listed.agents[0];
    assert_eq!(
        (
            main.tenant_id.as_str(),
            main.agent_id.as_str(),
            main.is_default,
            main.stored
        ),
        ("t1", "main", true, false)
    );
    assert_eq!(
        (main.max_tool_steps, main.timeout_ms),
        (DEFAULT_MAX_TOOL_STEPS, DEFAULT_TIMEOUT_MS)
    );
    assert_eq!(&get(api, &ann, "main").await.unwrap(), main);
    let unknown = assert_code(get(api, &ann, "nope").await, ErrorCode::NotFound);
    assert_eq!(unknown, "unknown agent: nope");
    // Not even a valid id: the same answer as for a missing agent.
    assert_code(get(api, &ann, "Bad Id").await, ErrorCode::NotFound);

    // Its first change stores it; it stays the default and cannot go.
    let boss = admin("t1", "boss");
    let changed = api
        .update_agent(
            &boss,
            update(
                "main",
                AgentSettings {
                    name: Some("Main".into()),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    assert!(changed.is_default && changed.stored, "{changed:?}");
    assert_eq!(changed.name, "Main");
    assert_eq!(get(api, &ann, "main").await.unwrap(), changed);
    assert_code(delete(api, &boss, "main").await, ErrorCode::InvalidRequest);
    assert_code(
        api.create_agent(&boss, create("main", AgentSettings::default()))
            .await,
        ErrorCode::AlreadyExists,
    );
    assert_eq!(ids(api, &ann).await, ["main"]);
}

async fn admins_create_change_and_delete_agents(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    let created = api
        .create_agent(
            &boss,
            create(
                "coder",
                AgentSettings {
                    name: Some(" Coder ".into()),
                    emoji: Some("🛠".into()),
                    avatar: Some("https://example.com/a.png".into()),
                    workspace: Some("projects/coder".into()),
                    model: Some("gpt-x".into()),
                    fallbacks: names(&["gpt-y", "gpt-y", "claude-z"]),
                    system_prompt: Some("You write code.\nBe brief.".into()),
                    tools: names(&["web_fetch", "exec", "exec"]),
                    max_tool_steps: Some(4),
                    timeout_ms: Some(30_000),
                    exec_allowlist: None,
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            created.agent_id.as_str(),
            created.name.as_str(),
            created.emoji.as_str(),
            created.workspace.as_str(),
            created.model.as_str()
        ),
        ("coder", "Coder", "🛠", "projects/coder", "gpt-x")
    );
    assert_eq!(
        created.fallbacks,
        ["gpt-y", "claude-z"],
        "deduplicated, in order"
    );
    assert_eq!(created.tools, ["exec", "web_fetch"], "deduplicated, sorted");
    assert_eq!((created.max_tool_steps, created.timeout_ms), (4, 30_000));
    assert!(created.stored && !created.is_default);
    assert!(created.created_at_ms > 0 && created.updated_at_ms == created.created_at_ms);
    assert_eq!(get(api, &boss, "coder").await.unwrap(), created);
    assert_code(
        api.create_agent(&boss, create("coder", AgentSettings::default()))
            .await,
        ErrorCode::AlreadyExists,
    );
    // A second one with defaults; the default agent lists first, then by id.
    let plain = api
        .create_agent(&boss, create("a-helper", AgentSettings::default()))
        .await
        .unwrap();
    assert_eq!(
        (plain.max_tool_steps, plain.timeout_ms, plain.tools.len()),
        (DEFAULT_MAX_TOOL_STEPS, DEFAULT_TIMEOUT_MS, 0)
    );
    assert_eq!(ids(api, &boss).await, ["main", "a-helper", "coder"]);

    // An update changes what it names and keeps the rest.
    let changed = api
        .update_agent(
            &boss,
            update(
                "coder",
                AgentSettings {
                    model: Some("gpt-w".into()),
                    tools: names(&[]),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(changed.model, "gpt-w");
    assert!(changed.tools.is_empty());
    assert_eq!(changed.name, "Coder");
    assert_eq!(changed.fallbacks, ["gpt-y", "claude-z"]);
    assert_eq!(changed.created_at_ms, created.created_at_ms);
    assert_eq!(get(api, &boss, "coder").await.unwrap(), changed);
    assert_code(
        api.update_agent(&boss, update("ghost", AgentSettings::default()))
            .await,
        ErrorCode::NotFound,
    );

    // Owners manage the tenant they connected to as admins do.
    let root = owner("t1", "root");
    assert!(delete(api, &root, "coder").await.unwrap().deleted);
    assert_code(get(api, &boss, "coder").await, ErrorCode::NotFound);
    assert_code(delete(api, &boss, "coder").await, ErrorCode::NotFound);
    assert_eq!(ids(api, &boss).await, ["main", "a-helper"]);
    // A deleted agent's id is free again, with fresh settings.
    let again = api
        .create_agent(&boss, create("coder", AgentSettings::default()))
        .await
        .unwrap();
    assert_eq!(again.model, "");
}

async fn members_read_but_do_not_change(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    api.create_agent(&boss, create("coder", AgentSettings::default()))
        .await
        .unwrap();
    let ann = operator("t1", "ann");
    assert_eq!(ids(api, &ann).await, ["main", "coder"]);
    assert!(get(api, &ann, "coder").await.is_ok());
    for refused in [
        api.create_agent(&ann, create("mine", AgentSettings::default()))
            .await
            .map(|_| ()),
        api.update_agent(&ann, update("coder", AgentSettings::default()))
            .await
            .map(|_| ()),
        api.update_agent(&ann, update("main", AgentSettings::default()))
            .await
            .map(|_| ()),
        delete(api, &ann, "coder").await.map(|_| ()),
    ] {
        assert_code(refused, ErrorCode::Forbidden);
    }
    assert_eq!(ids(api, &ann).await, ["main", "coder"]);
    // No principal, no agents.
    assert_code(
        api.list_agents(&Principal::default(), ListAgentsRequest {})
            .await,
        ErrorCode::Unauthorized,
    );
}

async fn agents_stay_in_their_tenant(api: &dyn SessionApi) {
    let a = admin("ta", "boss");
    let b = admin("tb", "boss");
    let secret = AgentSettings {
        system_prompt: Some("tenant a only".into()),
        ..Default::default()
    };
    api.create_agent(&a, create("coder", secret.clone()))
        .await
        .unwrap();
    api.update_agent(&a, update("main", secret)).await.unwrap();
    assert_eq!(ids(api, &b).await, ["main"]);
    assert_eq!(get(api, &b, "main").await.unwrap().system_prompt, "");
    assert_code(get(api, &b, "coder").await, ErrorCode::NotFound);
    assert_code(
        api.update_agent(&b, update("coder", AgentSettings::default()))
            .await,
        ErrorCode::NotFound,
    );
    assert_code(delete(api, &b, "coder").await, ErrorCode::NotFound);
    // The same id in another tenant is another agent.
    let theirs = api
        .create_agent(&b, create("coder", AgentSettings::default()))
        .await
        .unwrap();
    assert_eq!(theirs.tenant_id, "tb");
    assert!(delete(api, &b, "coder").await.unwrap().deleted);
    let ours = get(api, &a, "coder").await.unwrap();
    assert_eq!(
        (ours.tenant_id.as_str(), ours.system_prompt.as_str()),
        ("ta", "tenant a only")
    );
}

async fn bad_settings_are_refused(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    let refusal = |id: &'static str, settings: AgentSettings| {
        let boss = boss.clone();
        async move {
            assert_code(
                api.create_agent(&boss, create(id, settings)).await,
                ErrorCode::InvalidRequest,
            )
        }
    };
    let cases: Vec<(&str, AgentSettings, &str)> = vec![
        ("", AgentSettings::default(), "invalid agent id"),
        ("Coder", AgentSettings::default(), "invalid agent id"),
        ("-x", AgentSettings::default(), "invalid agent id"),
        ("a/b", AgentSettings::default(), "invalid agent id"),
        (
            "x",
            AgentSettings {
                avatar: Some("javascript:alert(1)".into()),
                ..Default::default()
            },
            "avatar",
        ),
        (
            "x",
            AgentSettings {
                workspace: Some("../etc".into()),
                ..Default::default()
            },
            "workspace",
        ),
        (
            "x",
            AgentSettings {
                workspace: Some("/etc".into()),
                ..Default::default()
            },
            "workspace",
        ),
        (
            "x",
            AgentSettings {
                workspace: Some("a//b".into()),
                ..Default::default()
            },
            "workspace",
        ),
        (
            "x",
            AgentSettings {
                tools: names(&["Exec"]),
                ..Default::default()
            },
            "invalid tool name",
        ),
        (
            "x",
            AgentSettings {
                fallbacks: names(&["a", "b", "c", "d", "e", "f", "g", "h", "i"]),
                ..Default::default()
            },
            "fallback",
        ),
        (
            "x",
            AgentSettings {
                max_tool_steps: Some(101),
                ..Default::default()
            },
            "max_tool_steps",
        ),
        (
            "x",
            AgentSettings {
                timeout_ms: Some(10),
                ..Default::default()
            },
            "timeout_ms",
        ),
        (
            "x",
            AgentSettings {
                name: Some("a\u{7}b".into()),
                ..Default::default()
            },
            "name",
        ),
        (
            "x",
            AgentSettings {
                name: Some("n".repeat(129)),
                ..Default::default()
            },
            "name",
        ),
    ];
    for (id, settings, expected) in cases {
        let message = refusal(id, settings).await;
        assert!(message.contains(expected), "{id}: {message}");
    }
    // Nothing was stored by any of them.
    assert_eq!(ids(api, &boss).await, ["main"]);
    // A bad update changes nothing either.
    api.create_agent(&boss, create("x", AgentSettings::default()))
        .await
        .unwrap();
    let before = get(api, &boss, "x").await.unwrap();
    assert_code(
        api.update_agent(
            &boss,
            update(
                "x",
                AgentSettings {
                    name: Some("fine".into()),
                    timeout_ms: Some(0),
                    ..Default::default()
                },
            ),
        )
        .await,
        ErrorCode::InvalidRequest,
    );
    assert_eq!(get(api, &boss, "x").await.unwrap(), before);
}

async fn concurrent_changes_all_apply(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    api.create_agent(&boss, create("coder", AgentSettings::default()))
        .await
        .unwrap();
    // Each sets a different field: every one of them is kept.
    let settings = [
        AgentSettings {
            name: Some("N".into()),
            ..Default::default()
        },
        AgentSettings {
            emoji: Some("E".into()),
            ..Default::default()
        },
        AgentSettings {
            model: Some("M".into()),
            ..Default::default()
        },
        AgentSettings {
            system_prompt: Some("S".into()),
            ..Default::default()
        },
        AgentSettings {
            workspace: Some("W".into()),
            ..Default::default()
        },
        AgentSettings {
            max_tool_steps: Some(3),
            ..Default::default()
        },
    ];
    let results = join_all(
        settings
            .into_iter()
            .map(|s| api.update_agent(&boss, update("coder", s))),
    )
    .await;
    for result in results {
        result.unwrap();
    }
    let agent = get(api, &boss, "coder").await.unwrap();
    assert_eq!(
        (
            agent.name.as_str(),
            agent.emoji.as_str(),
            agent.model.as_str(),
            agent.system_prompt.as_str(),
            agent.workspace.as_str(),
            agent.max_tool_steps
        ),
        ("N", "E", "M", "S", "W", 3)
    );
}

async fn allow_always_adds_a_command_once(api: &dyn SessionApi) {
    let boss = admin("t1", "boss");
    let allow = |agent: &str, command: &str| AllowExecRequest {
        agent_id: agent.into(),
        command: command.into(),
    };
    // The default agent gets its row with its first allowed command.
    let main = api.allow_exec(&boss, allow("", "ls -la")).await.unwrap();
    assert_eq!(main.agent_id, "main");
    assert_eq!(main.exec_allowlist, ["ls -la"]);
    api.allow_exec(&boss, allow("main", "ls -la"))
        .await
        .unwrap();
    let main = api.allow_exec(&boss, allow("main", "date")).await.unwrap();
    assert_eq!(main.exec_allowlist, ["ls -la", "date"]);
    assert_eq!(
        get(api, &operator("t1", "alice"), "main")
            .await
            .unwrap()
            .exec_allowlist,
        ["ls -la", "date"]
    );
    // An approver (operator.approvals) may; a plain member may not.
    let approver = Principal {
        scopes: vec!["operator.approvals".into()],
        ..operator("t1", "carol")
    };
    api.allow_exec(&approver, allow("main", "uptime"))
        .await
        .unwrap();
    assert_code(
        api.allow_exec(&operator("t1", "alice"), allow("main", "rm -rf /"))
            .await,
        ErrorCode::Forbidden,
    );
    assert_code(
        api.allow_exec(&boss, allow("main", "  ")).await,
        ErrorCode::InvalidRequest,
    );
    assert_code(
        api.allow_exec(&boss, allow("ghost", "ls")).await,
        ErrorCode::NotFound,
    );
    // Another tenant's agent is untouched.
    assert!(
        get(api, &admin("t2", "boss"), "main")
            .await
            .unwrap()
            .exec_allowlist
            .is_empty()
    );
    // An admin sets the whole list.
    let set = api
        .update_agent(
            &boss,
            update(
                "main",
                AgentSettings {
                    exec_allowlist: names(&["git status"]),
                    ..Default::default()
                },
            ),
        )
        .await
        .unwrap();
    assert_eq!(set.exec_allowlist, ["git status"]);
}
