//! One run, from the first event to the last: loads the transcript as context,
//! streams the model (failing over between its models), coalesces its text
//! into deltas, runs the tools it calls (`run_tools`), and ends the run.
//!
//! Invariants:
//! - events go out as `start` → (`assistant` | `tool_start` | `tool_result`)*
//!   → exactly one of `end` / `error`, with seq 1, 2, 3, …;
//! - the concatenated deltas equal the terminal event's text (pending text is
//!   flushed before a tool event and before the terminal event; a later
//!   model step's text is set off by a blank line);
//! - nothing is written per token: each tool step writes its row when the
//!   model finished it, and the last assistant turn is written once, when the
//!   run ends, *before* the session is freed and the terminal event published, so
//!   a client that sees the terminal event can read the turn from history and
//!   send its next message without hitting `session-busy`;
//! - the end is claimed first ([`RunRegistry::claim_end`]); a run that lost its
//!   lease to a reaper writes and publishes nothing more.

use std::sync::Arc;
use std::time::Duration;

use clawgate_proto::Principal;
use clawgate_proto::pb::common::v1::{
    AssistantDelta, LifecycleEnd, LifecycleError, LifecycleStart, RunOutcome, ThinkingDelta,
    ToolStart, Usage, run_event,
};
use clawgate_proto::runner::{RunInfo, RunState};
use clawgate_proto::session::{
    AppendMessageRequest, ListMessagesRequest, MessageStatus, SessionApi as _, SessionClient,
};
use clawgate_runtime::clock::now_ms;
use futures_util::StreamExt as _;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::coalesce::Coalescer;
use crate::config::RunnerConfig;
use crate::context::{context_messages, write_turn};
use crate::events::{EventPublisher, RunIdentity};
use crate::failover::{self, Cooldowns, Pick, Tried};
use crate::provider::{
    ChatMessage, ModelEvent, ModelProvider, ModelRequest, ProviderError, ProviderErrorKind,
    TokenUsage, ToolCall,
};
use crate::registry::{RunControl, RunRegistry};
use crate::tools::AgentTools;

/// Everything a run needs; consumed by [`RunTask::run`].
pub(crate) struct RunTask {
    pub principal: Principal,
    pub identity: RunIdentity,
    pub started_at_ms: i64,
    pub timeout: Duration,
    pub control: Arc<RunControl>,
    pub provider: Arc<dyn ModelProvider>,
    pub session: SessionClient,
    pub registry: Arc<dyn RunRegistry>,
    pub publisher: EventPublisher,
    pub config: Arc<RunnerConfig>,
    /// The agent's instructions ('' = the runner's configured ones, if any).
    pub system_prompt: String,
    /// The agent's model (`None`: the provider's own).
    pub model: Option<String>,
    /// The agent's models to fail over to, in order.
    pub fallbacks: Vec<String>,
    /// Prefix of the run's cooldown keys (its tenant's for a tenant's own
    /// providers, so one tenant's failures never cool another's models).
    pub cooldown_scope: String,
    /// Models that failed recently (shared by the runner's runs).
    pub cooldowns: Arc<Cooldowns>,
    /// The tools the agent may call.
    pub tools: AgentTools,
    /// Most tool steps (model turns whose tool calls are run) per run.
    pub max_tool_steps: u32,
    /// The next `part` of a row this run writes.
    pub next_part: u32,
    /// Where the current step's text starts in the run's text.
    pub step_start: usize,
}

/// How one model call ended.
enum Attempt {
    Ended(Ending),
    /// A retryable failure before the model produced anything: another model
    /// (or a later try) may answer instead.
    Retry(ProviderError),
}

/// How the model part of a run ended.
pub(crate) enum Ending {
    Completed {
        stop_reason: String,
        usage: Option<TokenUsage>,
    },
    Aborted {
        stop_reason: String,
    },
    Failed(ProviderError),
}

/// What the model loop waits for next.
enum Step {
    Abort,
    Timeout,
    Flush,
    Model(Option<Result<ModelEvent, ProviderError>>),
}

impl RunTask {
    /// What the registry records if the run dies without ending properly.
    pub fn failed_info(&self) -> RunInfo {
        RunInfo {
            run_id: self.identity.run_id.clone(),
            session_key: self.identity.session_key.clone(),
            agent_id: self.identity.agent_id.clone(),
            tenant_id: self.identity.tenant_id.clone(),
            user_id: self.identity.user_id.clone(),
            started_at_ms: self.started_at_ms,
            state: RunState::Failed as i32,
            error: "internal error".to_owned(),
            ..Default::default()
        }
    }

    pub async fn run(mut self) {
        self.publisher
            .publish(run_event::Kind::Start(LifecycleStart {
                started_at_ms: self.started_at_ms,
            }))
            .await;
        let mut coalescer =
            Coalescer::new(self.config.coalesce_window, self.config.coalesce_max_bytes);
        let deadline = Instant::now() + self.timeout;
        let ending = match self.load_context().await {
            Ok(messages) => self.agent_loop(messages, deadline, &mut coalescer).await,
            Err(ending) => ending,
        };
        if let Some(delta) = coalescer.flush() {
            self.publish_delta(delta.text, delta.offset).await;
        }
        self.end(ending, coalescer.into_text()).await;
    }

    async fn load_context(&self) -> Result<Vec<ChatMessage>, Ending> {
        let request = ListMessagesRequest {
            session_key: self.identity.session_key.clone(),
            limit: self.config.max_history_messages,
        };
        let system_prompt = if self.system_prompt.is_empty() {
            self.config.system_prompt.as_deref()
        } else {
            Some(self.system_prompt.as_str())
        };
        match self.session.list_messages(&self.principal, request).await {
            Ok(response) => Ok(context_messages(system_prompt, &response.messages)),
            Err(err) => {
                tracing::error!(error = %err, "cannot load the session transcript");
                Err(Ending::Failed(ProviderError::new(
                    ProviderErrorKind::Unknown,
                    "the session history could not be loaded",
                )))
            }
        }
    }

    /// Calls the run's models in failover order until one answers, a
    /// failure is not retryable, or the attempts or the deadline run out.
    pub(crate) async fn call_models(
        &mut self,
        request: &ModelRequest,
        deadline: Instant,
        coalescer: &mut Coalescer,
        calls: &mut Vec<ToolCall>,
    ) -> Ending {
        let primary = self.model.as_deref().unwrap_or(self.provider.model());
        let models = failover::candidates(primary, &self.fallbacks);
        let keys: Vec<String> = models
            .iter()
            .map(|model| format!("{}\u{1f}{model}", self.cooldown_scope))
            .collect();
        let model_of = |key: &str| -> String {
            key.split_once('\u{1f}')
                .map_or(key, |(_, model)| model)
                .to_owned()
        };
        let cancel = self.control.cancelled().clone();
        let mut tried = Tried::default();
        let mut cooling_until = None;
        for _ in 0..failover::MAX_ATTEMPTS {
            let key = match self.cooldowns.pick(&keys, Instant::now()) {
                None => break,
                Some(Pick::Now(key)) => key,
                Some(Pick::Cooling(at)) => {
                    cooling_until = Some(at);
                    break;
                }
                Some(Pick::At(key, at)) => {
                    let model = model_of(&key);
                    if at >= deadline || at > Instant::now() + failover::MAX_WAIT {
                        cooling_until = Some(at);
                        break;
                    }
                    tracing::info!(model = %model, wait_ms = (at - Instant::now()).as_millis() as u64, "every model is cooling down; waiting");
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return self.aborted(),
                        () = tokio::time::sleep_until(at) => key,
                    }
                }
            };
            let model = model_of(&key);
            let span = model_span(self.provider.as_ref(), &model);
            let request = ModelRequest {
                model: Some(model.clone()),
                ..request.clone()
            };
            let attempt = self
                .call_model(request, deadline, coalescer, calls)
                .instrument(span)
                .await;
            match attempt {
                Attempt::Ended(Ending::Failed(err)) if !tried.is_empty() => {
                    return Ending::Failed(tried.into_error(Some((&model, err))));
                }
                Attempt::Ended(ending) => {
                    if matches!(ending, Ending::Completed { .. }) {
                        self.cooldowns.clear(&key);
                    }
                    return ending;
                }
                Attempt::Retry(err) => {
                    tracing::warn!(model = %model, error = %err.message, "model call failed; failing over");
                    self.cooldowns.cool(&key, &err, Instant::now());
                    tried.push(&model, err);
                }
            }
        }
        match (tried.is_empty(), cooling_until) {
            (false, _) => Ending::Failed(tried.into_error(None)),
            (true, Some(at)) => {
                let wait_ms = (at - Instant::now()).as_millis() as u64;
                let mut error = ProviderError::new(
                    ProviderErrorKind::RateLimit,
                    format!(
                        "every model of this agent failed moments ago; try again in {} s",
                        wait_ms.div_ceil(1000)
                    ),
                );
                error.retry_after_ms = Some(wait_ms);
                failed(error)
            }
            (true, None) => self.timed_out(),
        }
    }

    async fn call_model(
        &mut self,
        request: ModelRequest,
        deadline: Instant,
        coalescer: &mut Coalescer,
        calls: &mut Vec<ToolCall>,
    ) -> Attempt {
        let cancel = self.control.cancelled().clone();
        let opened = tokio::select! {
            biased;
            () = cancel.cancelled() => return Attempt::Ended(self.aborted()),
            () = tokio::time::sleep_until(deadline) => return Attempt::Ended(self.timed_out()),
            opened = self.provider.stream(request) => opened,
        };
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(err) => return retry_or_fail(err, false),
        };
        // Once the model produced something, a failure ends the run: what was
        // streamed cannot be taken back.
        let mut produced = false;
        let mut thinking =
            Coalescer::new(self.config.coalesce_window, self.config.coalesce_max_bytes);
        let ending = loop {
            let flush_at = match (coalescer.deadline(), thinking.deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let step = tokio::select! {
                biased;
                () = cancel.cancelled() => Step::Abort,
                () = tokio::time::sleep_until(deadline) => Step::Timeout,
                () = sleep_until_some(flush_at) => Step::Flush,
                next = stream.next() => Step::Model(next),
            };
            match step {
                Step::Abort => break self.aborted(),
                Step::Timeout => break self.timed_out(),
                Step::Flush => {
                    self.flush_thinking(&mut thinking).await;
                    self.flush(coalescer).await;
                }
                // Reasoning streams on its own, before the text it led to.
                Step::Model(Some(Ok(ModelEvent::Thinking(text)))) => {
                    produced = true;
                    if thinking.push(&text, Instant::now()) {
                        self.flush_thinking(&mut thinking).await;
                    }
                }
                Step::Model(Some(Ok(ModelEvent::Text(text)))) => {
                    self.flush_thinking(&mut thinking).await;
                    if !produced && self.step_start > 0 && coalescer.text().len() == self.step_start
                    {
                        // A later step's text starts a new paragraph of the reply.
                        coalescer.push(STEP_SEPARATOR, Instant::now());
                        self.step_start += STEP_SEPARATOR.len();
                    }
                    produced = true;
                    if coalescer.push(&text, Instant::now()) {
                        self.flush(coalescer).await;
                    }
                }
                Step::Model(Some(Ok(ModelEvent::ToolCall {
                    id,
                    name,
                    arguments_json,
                }))) => {
                    produced = true;
                    self.flush_thinking(&mut thinking).await;
                    self.flush(coalescer).await;
                    let call = ToolCall {
                        id: unique_call_id(id, calls),
                        name,
                        arguments_json,
                    };
                    self.publisher
                        .publish(run_event::Kind::ToolStart(ToolStart {
                            tool_call_id: call.id.clone(),
                            name: call.name.clone(),
                            arguments_json: call.arguments_json.clone(),
                        }))
                        .await;
                    calls.push(call);
                }
                Step::Model(Some(Ok(ModelEvent::Done {
                    finish_reason,
                    usage,
                }))) => {
                    self.flush_thinking(&mut thinking).await;
                    let span = tracing::Span::current();
                    if let Some(reason) = &finish_reason {
                        span.record("gen_ai.response.finish_reasons", reason.as_str());
                    }
                    if let Some(usage) = usage {
                        span.record("gen_ai.usage.input_tokens", usage.prompt_tokens);
                        span.record("gen_ai.usage.output_tokens", usage.completion_tokens);
                    }
                    break Ending::Completed {
                        stop_reason: finish_reason.unwrap_or_else(|| "stop".to_owned()),
                        usage,
                    };
                }
                Step::Model(Some(Err(err))) => return retry_or_fail(err, produced),
                Step::Model(None) => {
                    let err = ProviderError::new(
                        ProviderErrorKind::Network,
                        "the model stream ended before the reply was complete",
                    );
                    return retry_or_fail(err, produced);
                }
            }
        };
        Attempt::Ended(ending)
    }

    pub(crate) fn aborted(&self) -> Ending {
        let stop_reason = self.control.stop_reason();
        tracing::info!(stop_reason = %stop_reason, "run aborted");
        Ending::Aborted { stop_reason }
    }

    pub(crate) fn timed_out(&self) -> Ending {
        failed(ProviderError::new(
            ProviderErrorKind::Timeout,
            format!("the run timed out after {} s", self.timeout.as_secs()),
        ))
    }

    async fn flush(&mut self, coalescer: &mut Coalescer) {
        if let Some(delta) = coalescer.flush() {
            self.publish_delta(delta.text, delta.offset).await;
        }
    }

    async fn flush_thinking(&mut self, thinking: &mut Coalescer) {
        if let Some(delta) = thinking.flush() {
            self.publisher
                .publish(run_event::Kind::Thinking(ThinkingDelta {
                    delta: delta.text,
                    offset: delta.offset,
                }))
                .await;
        }
    }

    async fn publish_delta(&mut self, delta: String, offset: u64) {
        self.publisher
            .publish(run_event::Kind::Assistant(AssistantDelta { delta, offset }))
            .await;
    }

    /// Writes the assistant turn, frees the session, then publishes the terminal event.
    async fn end(mut self, ending: Ending, text: String) {
        let ended_at_ms = now_ms();
        let mut info = RunInfo {
            run_id: self.identity.run_id.clone(),
            session_key: self.identity.session_key.clone(),
            agent_id: self.identity.agent_id.clone(),
            tenant_id: self.identity.tenant_id.clone(),
            user_id: self.identity.user_id.clone(),
            started_at_ms: self.started_at_ms,
            ended_at_ms,
            text: text.clone(),
            ..Default::default()
        };
        let (status, error, terminal) = match ending {
            Ending::Completed { stop_reason, usage } => {
                let usage = usage.map(to_usage);
                info.state = RunState::Completed as i32;
                info.stop_reason = stop_reason.clone();
                info.usage = usage;
                let end = LifecycleEnd {
                    started_at_ms: self.started_at_ms,
                    ended_at_ms,
                    outcome: RunOutcome::Completed as i32,
                    stop_reason,
                    text: text.clone(),
                    usage,
                };
                (
                    MessageStatus::Complete,
                    String::new(),
                    run_event::Kind::End(end),
                )
            }
            Ending::Aborted { stop_reason } => {
                info.state = RunState::Aborted as i32;
                info.stop_reason = stop_reason.clone();
                let end = LifecycleEnd {
                    started_at_ms: self.started_at_ms,
                    ended_at_ms,
                    outcome: RunOutcome::Aborted as i32,
                    stop_reason,
                    text: text.clone(),
                    usage: None,
                };
                (
                    MessageStatus::Aborted,
                    String::new(),
                    run_event::Kind::End(end),
                )
            }
            Ending::Failed(err) => {
                let kind = err.kind.wire_kind();
                info.state = RunState::Failed as i32;
                info.error = err.message.clone();
                if err.kind == ProviderErrorKind::Timeout {
                    info.stop_reason = "timeout".to_owned();
                }
                tracing::warn!(error = %err.message, kind, "run failed");
                let error = LifecycleError {
                    started_at_ms: self.started_at_ms,
                    ended_at_ms,
                    message: err.message.clone(),
                    kind: kind.to_owned(),
                    text: text.clone(),
                };
                (
                    MessageStatus::Error,
                    err.message,
                    run_event::Kind::Error(error),
                )
            }
        };
        // Exactly one process ends a run: a run that lost its lease was (or is
        // being) ended by a reaper, which wrote the row and the terminal event.
        if !self.registry.claim_end(&info).await {
            self.control.mark_ended();
            return;
        }
        // The last step's text: earlier steps wrote their own rows.
        let last_step = text.get(self.step_start..).unwrap_or_default().to_owned();
        self.write_assistant_turn(last_step, status, error).await;
        self.registry.finish(info).await;
        self.publisher.publish(terminal).await;
        self.control.mark_ended();
    }

    async fn write_assistant_turn(
        &mut self,
        content: String,
        status: MessageStatus,
        error: String,
    ) {
        let request = AppendMessageRequest {
            session_key: self.identity.session_key.clone(),
            role: "assistant".to_owned(),
            content,
            run_id: self.identity.run_id.clone(),
            status: status as i32,
            error,
            agent_id: self.identity.agent_id.clone(),
            part: self.take_part(),
            ..Default::default()
        };
        write_turn(&self.session, &self.principal, request).await;
    }

    /// The `part` of the next row this run writes.
    pub(crate) fn take_part(&mut self) -> u32 {
        let part = self.next_part;
        self.next_part += 1;
        part
    }
}

/// Put between the texts of two model steps of one reply.
const STEP_SEPARATOR: &str = "\n\n";

/// `id`, or a fresh one when the model sent none or one already used in this step.
fn unique_call_id(id: String, calls: &[ToolCall]) -> String {
    if !id.is_empty() && !calls.iter().any(|call| call.id == id) {
        return id;
    }
    format!("call_{}", uuid::Uuid::new_v4().simple())
}

/// A failed call: another try when nothing was produced and the failure is
/// transient, else the end of the run.
fn retry_or_fail(err: ProviderError, produced: bool) -> Attempt {
    tracing::Span::current().record("otel.status_code", "ERROR");
    tracing::Span::current().record("error.type", err.kind.wire_kind());
    if !produced && failover::is_retryable(&err) {
        Attempt::Retry(err)
    } else {
        Attempt::Ended(Ending::Failed(err))
    }
}

fn failed(err: ProviderError) -> Ending {
    tracing::Span::current().record("otel.status_code", "ERROR");
    Ending::Failed(err)
}

fn to_usage(usage: TokenUsage) -> Usage {
    Usage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.total_tokens,
    }
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The span of one model call, with OpenTelemetry gen_ai attributes.
fn model_span(provider: &dyn ModelProvider, model: &str) -> tracing::Span {
    tracing::info_span!(
        "gen_ai.chat",
        otel.name = %format!("chat {model}"),
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty,
        gen_ai.system = provider.system(),
        gen_ai.operation.name = "chat",
        gen_ai.request.model = model,
        gen_ai.response.finish_reasons = tracing::field::Empty,
        gen_ai.usage.input_tokens = tracing::field::Empty,
        gen_ai.usage.output_tokens = tracing::field::Empty,
    )
}
