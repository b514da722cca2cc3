//! The tool loop of a run: model → tool calls → results → model, until the
//! model answers without calling a tool, or the agent's step limit, the
//! deadline or an abort ends the run.
//!
//! Invariants:
//! - a step's assistant row (its text and calls) is written before its tools
//!   run, and every call gets exactly one tool row — its result, or why it has
//!   none (aborted, timed out, over the step limit) — so the transcript never
//!   holds a call without an answer;
//! - the calls of one step run concurrently; each `tool_result` event is
//!   published as its tool finishes, after that call's `tool_start`;
//! - nothing is written per token: one row per step and per call.

use clawgate_proto::pb::common::v1::{ToolResult, run_event};
use clawgate_proto::session::{AppendMessageRequest, MessageStatus, ToolCallRecord};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::time::Instant;

use crate::coalesce::Coalescer;
use crate::context::write_turn;
use crate::provider::{ChatMessage, ModelRequest, ProviderError, ProviderErrorKind, ToolCall};
use crate::run::{Ending, RunTask};
use crate::tools::{ToolContext, ToolOutput};

impl RunTask {
    /// Calls the model, runs the tools it asks for, and calls it again with
    /// their results, as long as the agent's limits allow.
    pub(crate) async fn agent_loop(
        &mut self,
        mut messages: Vec<ChatMessage>,
        deadline: Instant,
        coalescer: &mut Coalescer,
    ) -> Ending {
        let tools = if self.max_tool_steps == 0 {
            Vec::new()
        } else {
            self.tools.specs()
        };
        let mut steps = 0;
        loop {
            let request = ModelRequest {
                messages: messages.clone(),
                model: None,
                tools: tools.clone(),
            };
            let mut calls = Vec::new();
            let ending = self
                .call_models(&request, deadline, coalescer, &mut calls)
                .await;
            if calls.is_empty() || !matches!(ending, Ending::Completed { .. }) {
                return ending;
            }
            let text = coalescer.text()[self.step_start..].to_owned();
            self.write_step(&text, &calls).await;
            if steps >= self.max_tool_steps {
                let why = format!(
                    "not run: the agent's limit of {} tool steps was reached",
                    self.max_tool_steps
                );
                self.write_unanswered(&calls, &[], &why).await;
                self.mark_step(coalescer);
                return Ending::Failed(ProviderError::new(
                    ProviderErrorKind::Unknown,
                    format!(
                        "the run stopped after {} tool steps (the agent's maxToolSteps)",
                        self.max_tool_steps
                    ),
                ));
            }
            steps += 1;
            let results = self.run_tools(&calls, deadline).await;
            self.mark_step(coalescer);
            let outputs = match results {
                Ok(outputs) => outputs,
                Err((ending, done)) => {
                    let why = match &ending {
                        Ending::Aborted { .. } => "not finished: the run was aborted",
                        _ => "not finished: the run timed out",
                    };
                    self.write_unanswered(&calls, &done, why).await;
                    return ending;
                }
            };
            messages.push(ChatMessage::assistant_with_calls(text, calls.clone()));
            for (call, output) in calls.iter().zip(outputs) {
                self.write_result(call, &output).await;
                messages.push(ChatMessage::tool_result(
                    &call.id,
                    output.content,
                    output.is_error,
                ));
            }
        }
    }

    /// The next step's text starts where the run's text is now.
    fn mark_step(&mut self, coalescer: &Coalescer) {
        self.step_start = coalescer.text().len();
    }

    /// Runs `calls` concurrently; their outputs in call order, or how the run
    /// ended meanwhile with the outputs that were done.
    async fn run_tools(
        &mut self,
        calls: &[ToolCall],
        deadline: Instant,
    ) -> Result<Vec<ToolOutput>, (Ending, Vec<(usize, ToolOutput)>)> {
        let context = ToolContext {
            principal: ToolContext::narrowed(&self.principal),
            session: self.session.clone(),
            session_key: self.identity.session_key.clone(),
            agent_id: self.identity.agent_id.clone(),
            run_id: self.identity.run_id.clone(),
        };
        let tools = self.tools.clone();
        let cancel = self.control.cancelled().clone();
        let mut pending: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let (tools, context) = (&tools, &context);
                async move {
                    let started = std::time::Instant::now();
                    let output = tools.call(context, &call.name, &call.arguments_json).await;
                    tracing::info!(
                        tool = %call.name,
                        is_error = output.is_error,
                        duration_ms = started.elapsed().as_millis() as u64,
                        "tool call finished"
                    );
                    (index, output)
                }
            })
            .collect();
        let mut done: Vec<(usize, ToolOutput)> = Vec::with_capacity(calls.len());
        loop {
            let next = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err((self.aborted(), done)),
                () = tokio::time::sleep_until(deadline) => return Err((self.timed_out(), done)),
                next = pending.next() => next,
            };
            let Some((index, output)) = next else { break };
            let call = &calls[index];
            self.publisher
                .publish(run_event::Kind::ToolResult(ToolResult {
                    tool_call_id: call.id.clone(),
                    name: call.name.clone(),
                    result_json: output.content.clone(),
                    is_error: output.is_error,
                }))
                .await;
            done.push((index, output));
        }
        done.sort_by_key(|(index, _)| *index);
        Ok(done.into_iter().map(|(_, output)| output).collect())
    }

    /// The assistant row of a step that called tools.
    async fn write_step(&mut self, text: &str, calls: &[ToolCall]) {
        let request = AppendMessageRequest {
            session_key: self.identity.session_key.clone(),
            role: "assistant".to_owned(),
            content: text.to_owned(),
            run_id: self.identity.run_id.clone(),
            status: MessageStatus::Complete as i32,
            agent_id: self.identity.agent_id.clone(),
            part: self.take_part(),
            tool_calls: calls
                .iter()
                .map(|call| ToolCallRecord {
                    id: call.id.clone(),
                    name: call.name.clone(),
                    arguments_json: call.arguments_json.clone(),
                })
                .collect(),
            ..Default::default()
        };
        write_turn(&self.session, &self.principal, request).await;
    }

    /// The tool row of `call`.
    async fn write_result(&mut self, call: &ToolCall, output: &ToolOutput) {
        let request = AppendMessageRequest {
            session_key: self.identity.session_key.clone(),
            role: "tool".to_owned(),
            content: output.content.clone(),
            run_id: self.identity.run_id.clone(),
            status: MessageStatus::Complete as i32,
            agent_id: self.identity.agent_id.clone(),
            part: self.take_part(),
            tool_call_id: call.id.clone(),
            tool_name: call.name.clone(),
            tool_error: output.is_error,
            ..Default::default()
        };
        write_turn(&self.session, &self.principal, request).await;
    }

    /// Tool rows for every call of a step that ended early: the outputs that
    /// were `done`, `why` for the others.
    async fn write_unanswered(
        &mut self,
        calls: &[ToolCall],
        done: &[(usize, ToolOutput)],
        why: &str,
    ) {
        for (index, call) in calls.iter().enumerate() {
            let output = match done.iter().find(|(i, _)| *i == index) {
                Some((_, output)) => output.clone(),
                None => ToolOutput::error(why),
            };
            self.write_result(call, &output).await;
        }
    }
}
