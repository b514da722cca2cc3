//! The `exec` tool through its public API: what runs and how its outcome
//! reads, the gate asked first with the exact request, the working directory
//! confined to the user's own directory, timeouts and aborts killing the
//! command's whole process group.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use clawgate_proto::Principal;
use clawgate_proto::session::SessionClient;
use clawgate_runner::tools::exec::{ExecConfig, ExecGate, ExecRequest, ExecTool, GateDecision};
use clawgate_runner::tools::{MAX_OUTPUT_BYTES, Tool, ToolContext, ToolOutput};
use clawgate_session::SessionService;
use serde_json::{Value, json};

const TENANT: &str = "tenant-a";

/// A gate that records what it was asked and answers `decision`.
struct Recorder {
    decision: GateDecision,
    seen: Mutex<Vec<ExecRequest>>,
}

impl Recorder {
    fn new(decision: GateDecision) -> Arc<Self> {
        Arc::new(Self {
            decision,
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<ExecRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

#[async_trait]
impl ExecGate for Recorder {
    async fn check(&self, _context: &ToolContext, request: &ExecRequest) -> GateDecision {
        self.seen.lock().expect("lock").push(request.clone());
        self.decision.clone()
    }
}

struct Fixture {
    tool: ExecTool,
    gate: Arc<Recorder>,
    session: SessionClient,
    /// The canonical workspace.
    workspace: PathBuf,
    _dirs: Vec<tempfile::TempDir>,
}

impl Fixture {
    async fn new() -> Self {
        Self::with(GateDecision::Allow, |_| {}).await
    }

    async fn with(decision: GateDecision, adjust: impl FnOnce(&mut ExecConfig)) -> Self {
        let db = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            db.path().join("session.db").display()
        );
        let sessions = SessionService::connect(&url).await.expect("session db");
        sessions.migrate().await.expect("migrate");
        let session = SessionClient::local(Arc::new(sessions));
        let workspace = tempfile::tempdir().expect("tempdir");
        let mut config = ExecConfig::new(workspace.path());
        adjust(&mut config);
        let gate = Recorder::new(decision);
        Self {
            tool: ExecTool::new(config, gate.clone()),
            gate,
            session,
            workspace: workspace.path().canonicalize().expect("canonical"),
            _dirs: vec![db, workspace],
        }
    }

    fn context(&self, user: &str) -> ToolContext {
        ToolContext {
            principal: Principal {
                tenant_id: TENANT.into(),
                user_id: user.into(),
                ..Default::default()
            },
            session: self.session.clone(),
            session_key: "main".into(),
            agent_id: "default".into(),
            run_id: "run-1".into(),
        }
    }

    /// The user's own directory (as the tool makes it).
    fn home(&self, user: &str) -> PathBuf {
        self.workspace.join(TENANT).join(user)
    }

    async fn call(&self, user: &str, arguments: Value) -> ToolOutput {
        self.tool.call(&self.context(user), arguments).await
    }
}

fn parsed(output: &ToolOutput) -> Value {
    serde_json::from_str(&output.content).unwrap_or_else(|err| panic!("{err}: {output:?}"))
}

/// Whether `pid` is a live process (zombies waiting for a reaper are not).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(state.and_then(|s| s.chars().next()), Some('Z' | 'X') | None)
        }
        Err(_) => false,
    }
}

async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn read_pid(path: &Path) -> u32 {
    for _ in 0..250 {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse()
        {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no pid in {}", path.display())
}

#[tokio::test]
async fn the_spec_names_the_tool_and_its_arguments() {
    let f = Fixture::new().await;
    let spec = f.tool.spec();
    assert_eq!(spec.name, "exec");
    assert!(f.tool.on_by_default());
    assert_eq!(spec.parameters["required"], json!(["command"]));
    for name in ["command", "workdir", "timeout"] {
        assert!(spec.parameters["properties"].get(name).is_some(), "{name}");
    }
    assert!(!spec.description.is_empty());
}

#[tokio::test]
async fn a_command_returns_its_exit_code_and_output() {
    let f = Fixture::new().await;
    let output = f
        .call("alice", json!({"command": "echo out; echo err >&2"}))
        .await;
    assert!(!output.is_error, "{output:?}");
    let result = parsed(&output);
    assert_eq!(result["exitCode"], 0);
    assert_eq!(result["timedOut"], false);
    assert_eq!(result["truncated"], false);
    assert!(result.get("signal").is_none(), "{result}");
    assert!(result["durationMs"].is_u64(), "{result}");
    let text = result["output"].as_str().expect("output");
    assert!(text.contains("out\n") && text.contains("err\n"), "{text:?}");
    let home = f.home("alice");
    assert_eq!(result["cwd"], home.to_str().expect("utf-8"));

    let failed = f.call("alice", json!({"command": "echo no; exit 7"})).await;
    assert!(failed.is_error, "{failed:?}");
    assert_eq!(parsed(&failed)["exitCode"], 7);
    assert_eq!(parsed(&failed)["output"], "no\n");

    let killed = f.call("alice", json!({"command": "kill -KILL $$"})).await;
    assert!(killed.is_error, "{killed:?}");
    assert_eq!(parsed(&killed)["signal"], 9);
    assert_eq!(parsed(&killed)["exitCode"], Value::Null);
}

#[tokio::test]
async fn the_runner_environment_does_not_reach_the_command() {
    // cargo sets these for the test process.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
    let f = Fixture::new().await;
    let output = f.call("alice", json!({"command": "env"})).await;
    let result = parsed(&output);
    let text = result["output"].as_str().expect("output");
    assert!(!text.contains("CARGO"), "{text}");
    let home = format!("HOME={}", f.home("alice").display());
    assert!(text.lines().any(|line| line == home), "{text}");
    assert!(
        text.lines()
            .any(|line| line == "PATH=/usr/local/bin:/usr/bin:/bin")
    );
}

#[tokio::test]
async fn the_gate_sees_the_exact_request() {
    let f = Fixture::new().await;
    std::fs::create_dir_all(f.home("alice").join("src/sub")).expect("mkdir");
    let output = f
        .call(
            "alice",
            json!({"command": "pwd", "workdir": "src/./sub/../sub", "timeout": 2.5}),
        )
        .await;
    assert!(!output.is_error, "{output:?}");
    let cwd = f.home("alice").join("src/sub");
    let cwd = cwd.to_str().expect("utf-8");
    assert_eq!(parsed(&output)["output"], format!("{cwd}\n"));
    assert_eq!(
        f.gate.seen(),
        [ExecRequest {
            command: "pwd".into(),
            cwd: cwd.into(),
            timeout_ms: 2500,
        }]
    );

    // Absolute inside, the default timeout, and a timeout capped at the maximum.
    f.call("alice", json!({"command": "true", "workdir": cwd}))
        .await;
    f.call("alice", json!({"command": "true", "timeout": 100000}))
        .await;
    let seen = f.gate.seen();
    assert_eq!(seen[1].cwd, cwd);
    assert_eq!(seen[1].timeout_ms, 60_000);
    assert_eq!(seen[2].cwd, f.home("alice").to_str().expect("utf-8"));
    assert_eq!(seen[2].timeout_ms, 600_000);
}

#[tokio::test]
async fn a_denied_command_never_runs() {
    let f = Fixture::with(GateDecision::Deny("not on the allowlist".into()), |_| {}).await;
    let output = f.call("alice", json!({"command": "touch created"})).await;
    assert!(output.is_error);
    assert_eq!(output.content, "exec denied: not on the allowlist");
    assert_eq!(f.gate.seen().len(), 1);
    assert!(!f.home("alice").join("created").exists());
}

#[tokio::test]
async fn each_user_has_a_directory_of_their_own() {
    let f = Fixture::new().await;
    let alice = f
        .call("alice", json!({"command": "echo mine > note; pwd"}))
        .await;
    let bob = f.call("bob", json!({"command": "ls; pwd"})).await;
    assert!(!alice.is_error && !bob.is_error, "{alice:?} {bob:?}");
    let alice_home = f.home("alice");
    let bob_home = f.home("bob");
    assert_eq!(
        parsed(&alice)["output"],
        format!("{}\n", alice_home.display())
    );
    // bob sees none of alice's files.
    assert_eq!(parsed(&bob)["output"], format!("{}\n", bob_home.display()));
    assert!(alice_home.join("note").exists());
    assert!(!bob_home.join("note").exists());

    // Ids that cannot be a directory of their own are refused.
    let output = f.call("..", json!({"command": "true"})).await;
    assert!(output.is_error);
    assert!(
        output.content.contains("cannot name a directory"),
        "{output:?}"
    );
    assert_eq!(f.gate.seen().len(), 2);
}

#[tokio::test]
async fn a_missing_workspace_is_created() {
    let parent = tempfile::tempdir().expect("tempdir");
    let workspace = parent.path().join("not-yet");
    let f = Fixture::with(GateDecision::Allow, |config| {
        config.workspace = workspace.clone();
    })
    .await;
    let output = f.call("alice", json!({"command": "pwd"})).await;
    assert!(!output.is_error, "{output:?}");
    let home = workspace
        .canonicalize()
        .expect("created")
        .join(TENANT)
        .join("alice");
    assert_eq!(parsed(&output)["output"], format!("{}\n", home.display()));
}

#[tokio::test]
async fn the_working_directory_stays_inside_the_users_directory() {
    let f = Fixture::new().await;
    let home = f.home("alice");
    std::fs::create_dir_all(&home).expect("mkdir");
    std::fs::create_dir_all(f.home("bob")).expect("mkdir");
    std::fs::write(home.join("file"), "x").expect("write");
    let outside = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(outside.path(), home.join("out")).expect("symlink");
    std::os::unix::fs::symlink(home.join("missing"), home.join("dangling")).expect("symlink");

    let outside_path = outside.path().to_str().expect("utf-8");
    let bob_path = f.home("bob");
    let refused = [
        ("..", "outside"),
        ("../bob", "outside"),
        ("../../..", "outside"),
        ("sub/../../bob", "outside"),
        (outside_path, "outside"),
        (bob_path.to_str().expect("utf-8"), "outside"),
        ("/", "outside"),
        ("out", "outside"),
        ("missing", "does not exist"),
        ("dangling", "does not exist"),
        ("file", "not a directory"),
    ];
    for (workdir, why) in refused {
        let output = f
            .call(
                "alice",
                json!({"command": "touch escaped", "workdir": workdir}),
            )
            .await;
        assert!(output.is_error, "{workdir}: {output:?}");
        assert!(output.content.contains(why), "{workdir}: {output:?}");
    }
    assert!(f.gate.seen().is_empty(), "{:?}", f.gate.seen());
    assert!(!outside.path().join("escaped").exists());
    assert!(!bob_path.join("escaped").exists());

    // A symlink that stays inside is fine; the gate sees where it leads.
    std::fs::create_dir(home.join("real")).expect("mkdir");
    std::os::unix::fs::symlink(home.join("real"), home.join("link")).expect("symlink");
    let output = f
        .call("alice", json!({"command": "pwd -P", "workdir": "link"}))
        .await;
    assert!(!output.is_error, "{output:?}");
    assert_eq!(
        f.gate.seen()[0].cwd,
        home.join("real").to_str().expect("utf-8")
    );
}

#[tokio::test]
async fn bad_arguments_are_error_outputs() {
    let f = Fixture::new().await;
    let long = "x".repeat(8 * 1024 + 1);
    let cases = [
        json!({}),
        json!({"command": ""}),
        json!({"command": "   "}),
        json!({"command": 5}),
        json!({"command": long}),
        json!({"command": "true", "workdir": 3}),
        json!({"command": "true", "timeout": 0}),
        json!({"command": "true", "timeout": -1}),
        json!({"command": "true", "timeout": "10"}),
    ];
    for arguments in cases {
        let output = f.call("alice", arguments.clone()).await;
        assert!(output.is_error, "{arguments}: {output:?}");
    }
    assert!(f.gate.seen().is_empty());
}

#[tokio::test]
async fn a_timeout_kills_the_command_and_its_children() {
    let f = Fixture::new().await;
    let output = f
        .call(
            "alice",
            json!({"command": "echo started; sleep 30 & echo $! > pid; wait", "timeout": 0.5}),
        )
        .await;
    assert!(output.is_error, "{output:?}");
    let result = parsed(&output);
    assert_eq!(result["timedOut"], true);
    assert_eq!(result["output"], "started\n");
    assert!(
        result["durationMs"].as_u64().expect("ms") < 5_000,
        "{result}"
    );
    let pid = read_pid(&f.home("alice").join("pid")).await;
    assert!(gone(pid).await, "background sleep {pid} survived");
}

#[tokio::test]
async fn an_aborted_call_kills_the_command_and_its_children() {
    let f = Fixture::new().await;
    let pid_file = f.home("alice").join("pid");
    let pid = tokio::select! {
        output = f.call("alice", json!({"command": "sleep 30 & echo $! > pid; wait"})) => {
            panic!("ended: {output:?}")
        }
        pid = read_pid(&pid_file) => pid,
    };
    // The call's future is dropped here, as an aborted run drops it.
    assert!(gone(pid).await, "background sleep {pid} survived");
}

#[tokio::test]
async fn output_is_capped() {
    let f = Fixture::with(GateDecision::Allow, |config| config.max_output_bytes = 100).await;
    let output = f.call("alice", json!({"command": "seq 1 10000"})).await;
    assert!(!output.is_error, "{output:?}");
    let result = parsed(&output);
    assert_eq!(result["truncated"], true);
    let text = result["output"].as_str().expect("output");
    assert!(
        text.len() <= 100 && text.starts_with("1\n2\n3\n"),
        "{text:?}"
    );

    // With the default cap the whole result still fits a tool output.
    let f = Fixture::new().await;
    let output = f
        .call(
            "alice",
            json!({"command": "head -c 200000 /dev/zero | tr '\\0' '\"'"}),
        )
        .await;
    assert!(output.content.len() <= MAX_OUTPUT_BYTES);
    assert_eq!(parsed(&output)["truncated"], true);
}
