//! Test harness: a runner wired to the real session service (SQLite in a temporary
//! directory), the in-process bus and a mock model server.

#![allow(dead_code)]

pub mod nodes;

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::pb::common::v1::{BusMessage, RunEvent, bus_message, run_event};
use clawgate_proto::runner::{RunnerApi, StartRunRequest, StartRunResponse};
use clawgate_proto::session::{ListMessagesRequest, SessionApi, SessionClient, TranscriptMessage};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runner::{ProviderConfig, RunnerConfig, RunnerService};
use clawgate_runtime::bus::memory::MemoryBus;
use clawgate_runtime::bus::{Delivery, EventBus, SubscriptionControl, Topic};
use clawgate_runtime::nodes::NodeRegistry;
use clawgate_session::SessionService;
pub use clawgate_testkit::mock_model::{MockModel, Script};
use prost::Message as _;
use tokio::sync::mpsc;

pub const TENANT: &str = "tenant-a";
pub const MODEL: &str = "mock-model";
pub const API_KEY: &str = "sk-test-key";

pub fn principal(user: &str) -> Principal {
    Principal {
        tenant_id: TENANT.into(),
        user_id: user.into(),
        ..Default::default()
    }
}

pub fn start(session_key: &str, message: &str, key: &str) -> StartRunRequest {
    StartRunRequest {
        session_key: session_key.into(),
        message: message.into(),
        idempotency_key: key.into(),
        ..Default::default()
    }
}

pub struct Harness {
    pub runner: RunnerService,
    pub session: SessionClient,
    pub model: Option<MockModel>,
    events: mpsc::Receiver<Delivery>,
    _control: Arc<dyn SubscriptionControl>,
    _dir: tempfile::TempDir,
}

pub struct Options {
    pub script: Option<Script>,
    pub config: RunnerConfig,
    /// Replaces the bus the runner publishes on (the harness still listens on its own).
    pub bus: Option<Arc<dyn EventBus>>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            script: Some(Script::tokens(["Hello", ", ", "world", "!"])),
            config: RunnerConfig::default(),
            bus: None,
        }
    }
}

impl Harness {
    pub async fn with_script(script: Script) -> Self {
        Self::start(Options {
            script: Some(script),
            ..Options::default()
        })
        .await
    }

    pub async fn start(options: Options) -> Self {
        Self::start_on(options, MemoryBus::new(), None).await
    }

    /// A harness on `memory` (which the test may share, e.g. with a fake
    /// edge), its runner built with `nodes` when given.
    pub async fn start_on(
        options: Options,
        memory: MemoryBus,
        nodes: Option<Arc<dyn NodeRegistry>>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("session.db").display()
        );
        let sessions = SessionService::connect(&url).await.expect("session db");
        sessions.migrate().await.expect("migrate");
        let session = SessionClient::local(Arc::new(sessions));

        let subscriber = memory.subscriber(4096).await.expect("subscriber");
        subscriber
            .control
            .subscribe(&Topic::user(TENANT, "alice"))
            .await
            .expect("subscribe");

        let mut config = options.config;
        let model = match options.script {
            Some(script) => {
                let model = MockModel::start(script).await.expect("mock model");
                config.provider =
                    Some(ProviderConfig::new(model.base_url(), MODEL).with_api_key(API_KEY));
                Some(model)
            }
            None => None,
        };
        let bus: Arc<dyn EventBus> = options.bus.unwrap_or_else(|| Arc::new(memory));
        let runner = match nodes {
            Some(nodes) => RunnerService::builder(config, session.clone(), bus)
                .nodes(nodes)
                .build()
                .await
                .expect("runner"),
            None => RunnerService::new(config, session.clone(), bus),
        };
        Self {
            runner,
            session,
            model,
            events: subscriber.deliveries,
            _control: subscriber.control,
            _dir: dir,
        }
    }

    pub fn model(&self) -> &MockModel {
        self.model.as_ref().expect("model")
    }

    pub async fn start_run(
        &self,
        request: StartRunRequest,
    ) -> Result<StartRunResponse, ServiceError> {
        self.runner.start_run(&principal("alice"), request).await
    }

    /// The next run event on alice's topic (other bus messages are skipped).
    pub async fn next_event(&mut self) -> RunEvent {
        loop {
            let delivery = tokio::time::timeout(Duration::from_secs(10), self.events.recv())
                .await
                .expect("an event in time")
                .expect("bus open");
            match BusMessage::decode(delivery.payload)
                .expect("bus message")
                .body
            {
                Some(bus_message::Body::RunEvent(event)) => return event,
                Some(_) => continue,
                None => panic!("empty bus message"),
            }
        }
    }

    /// Events of `run_id` up to and including its terminal event.
    pub async fn run_events(&mut self, run_id: &str) -> Vec<RunEvent> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.run_id != run_id {
                continue;
            }
            let terminal = is_terminal(&event);
            events.push(event);
            if terminal {
                return events;
            }
        }
    }

    /// Waits for the first assistant delta of `run_id`.
    pub async fn first_delta(&mut self, run_id: &str) -> RunEvent {
        loop {
            let event = self.next_event().await;
            if event.run_id == run_id && matches!(event.kind, Some(run_event::Kind::Assistant(_))) {
                return event;
            }
        }
    }

    pub async fn history(&self, session_key: &str) -> Vec<TranscriptMessage> {
        self.session
            .list_messages(
                &principal("alice"),
                ListMessagesRequest {
                    session_key: session_key.into(),
                    limit: 100,
                },
            )
            .await
            .map(|response| response.messages)
            .unwrap_or_default()
    }
}

pub fn is_terminal(event: &RunEvent) -> bool {
    matches!(
        event.kind,
        Some(run_event::Kind::End(_)) | Some(run_event::Kind::Error(_))
    )
}

/// The concatenated assistant deltas of `events`, checking offsets have no gap.
pub fn reassemble(events: &[RunEvent]) -> (String, usize) {
    let mut text = String::new();
    let mut deltas = 0;
    for event in events {
        if let Some(run_event::Kind::Assistant(delta)) = &event.kind {
            assert_eq!(delta.offset, text.len() as u64, "delta offset");
            text.push_str(&delta.delta);
            deltas += 1;
        }
    }
    (text, deltas)
}
