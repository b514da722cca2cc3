//! Where clawgate's frames differ from the v4 TUI session
//! (`openclaw-v4-tui-session.jsonl`: startup calls, one chat turn, session
//! events, keepalive), and why.
//!
//! Most of it is the session row: OpenClaw's carries ~70 fields of state
//! clawgate does not keep (per-session model and thinking overrides, token
//! accounting, sharing, UI presentation, run summaries). Those are named once
//! per reason and applied under every place a row appears; the TUI reads
//! only `key`, `sessionId`, `updatedAt` and settings it falls back on when
//! they are absent.

use crate::conformance_support::{Exception, except, except_under};

/// Every place a session row (or its flattened copy) appears in the session.
const ROWS: [&str; 7] = [
    "event:sessions.changed/payload",
    "event:sessions.changed/payload/session",
    "event:session.message/payload",
    "event:session.message/payload/session",
    "res:sessions.describe/payload/session",
    "res:sessions.list/payload/sessions/0",
    "res:chat.history/payload/sessionInfo",
];

const SETTINGS: &[&str] = &[
    "permissionMode",
    "permissionModePending",
    "runtimeSelectionLocked",
    "modelOverrideSource",
    "fastAutoOnSeconds",
    "effectiveFastMode",
    "effectiveFastModeSource",
    "effectiveResponseUsage",
    "effectiveQueueMode",
    "thinkingLevel",
    "thinkingLevels",
    "thinkingOptions",
    "thinkingDefault",
    "toolOverrides",
    "agentRuntime",
    "contextTokens",
    "contextBudgetStatus",
    "model",
    "modelProvider",
    "activeModel",
    "activeModelProvider",
    "providerReview",
];

const USAGE: &[&str] = &[
    "totalTokens",
    "totalTokensFresh",
    "inputTokens",
    "outputTokens",
    "estimatedCostUsd",
];

const SHARING: &[&str] = &[
    "visibility",
    "sharingRole",
    "owner",
    "createdVia",
    "createdActor",
    "hiddenFromInvolvingMe",
    "participants",
    "participantCount",
    "observerDigest",
    "controlOwnerSessionKey",
    "swarm",
];

const RUN_SUMMARY: &[&str] = &[
    "status",
    "startedAt",
    "endedAt",
    "runtimeMs",
    "lastRunId",
    "lastRunError",
    "abortedLastRun",
    "systemSent",
    "restartRecoveryStatus",
    "agentStatus",
    "activitySummary",
    "activeLeafEntryId",
    "placement",
    "placementMove",
    "snapshotAt",
];

const PRESENTATION: &[&str] = &[
    "icon",
    "color",
    "category",
    "boardPresentation",
    "goal",
    "autoLabel",
    "channelAvatarUrl",
    "pinnedAt",
    "markedUnreadAt",
    "archivedAt",
    "archivedBy",
    "archiveReason",
    "ancestorSessions",
    "hasAutomation",
];

/// Row fields clawgate adds.
const ADDED: &[&str] = &[
    "userId",
    "messageCount",
    "lastMessagePreview",
    "lastInteractionAt",
];

/// Fields of a session event that a run's phase event lacks: clawgate's run
/// events carry no session row (the TUI re-describes the session after a run).
const PHASE_ROW: &[&str] = &[
    "session",
    "sessionId",
    "kind",
    "chatType",
    "createdAt",
    "updatedAt",
    "archived",
    "pinned",
    "unread",
    "label",
    "displayName",
    "hasActiveRun",
    "activeRunIds",
];

/// The exceptions of the v4 TUI session.
pub fn exceptions() -> Vec<Exception> {
    let mut all = vec![
        except(
            "res:agents.list/payload/ownership",
            "session ownership modes: clawgate has none",
        ),
        except(
            "res:agents.list/payload/selectionRequired",
            "session ownership modes: clawgate has none",
        ),
        except(
            "res:agents.list/payload/agents/0",
            "per-agent runtime, model, thinking, permission and workspace settings: the agents issue adds them",
        ),
        except(
            "res:question.list",
            "not offered (clawgate has no questions to ask): refused as every unoffered method; the TUI swallows the error",
        ),
        except(
            "res:plugin.approval.list",
            "not offered (clawgate has no plugins): refused; the TUI swallows the error",
        ),
        except(
            "res:taskSuggestions.list",
            "not offered (clawgate makes no task suggestions): refused; the TUI swallows the error",
        ),
        except(
            "res:commands.list",
            "not offered (slash commands: the agents issue); the TUI only loses autocomplete",
        ),
        except(
            "res:chat.history/payload/defaults/contextTokens",
            "the model's context window is not known to clawgate: null",
        ),
        except(
            "res:sessions.list/payload/defaults/contextTokens",
            "the model's context window is not known to clawgate: null",
        ),
        except(
            "res:sessions.list/payload/defaults/thinkingDefault",
            "clawgate sets no thinking levels: null",
        ),
        except(
            "res:sessions.list/payload/defaults/thinkingLevels",
            "clawgate sets no thinking levels: empty",
        ),
        except(
            "res:sessions.list/payload/defaults/thinkingOptions",
            "clawgate sets no thinking levels: empty",
        ),
        except(
            "res:sessions.list/payload/nextOffset",
            "the recorded gateway had 4 sessions, the replay has 1: no next page (null)",
        ),
        except(
            "res:sessions.list/payload/owners/0/identity",
            "clawgate's users have no separate profile identity",
        ),
        except(
            "res:chat.send/payload/serverTiming",
            "per-request ack timings are not reported",
        ),
        except(
            "event:chat.send_timing",
            "optional UI timing events; the TUI ignores them",
        ),
        except(
            "event:presence/payload/presence/0",
            "OpenClaw lists itself (mode `gateway`) first; clawgate lists connected clients only, with v4's client fields",
        ),
        except(
            "event:health",
            "the recorded 60 s `health` event came after the turn; clawgate's comes on its own schedule",
        ),
        except(
            "event:tick",
            "the recorded tick came 18 s after the turn; clawgate ticks every tick interval (tested elsewhere)",
        ),
        except(
            "event:sessions.changed/payload/reason",
            "OpenClaw-internal change reasons (`participants`, `agent.run.started`, `agent.input.settled`) clawgate has no counterpart for; its own are create/patch/reset/new/delete, and run phases",
        ),
        except(
            "event:sessions.changed/payload/phase",
            "events are paired by order: clawgate's phase events fall where OpenClaw sent reason events",
        ),
        except(
            "event:sessions.changed/payload/runId",
            "events are paired by order: clawgate's phase events fall where OpenClaw sent reason events",
        ),
        except(
            "event:session.message/payload/senderIsOwner",
            "clawgate has no shared sessions: the sender is always the owner",
        ),
        except(
            "event:session.message/payload/message",
            "transcript metadata: clawgate keeps the message id, seq and run, not OpenClaw's transport, sender identity or provider response fields",
        ),
    ];
    for event in [
        "presence",
        "agent.assistant",
        "agent.lifecycle.start",
        "agent.lifecycle.end",
        "chat.delta",
        "chat.final",
        "session.message",
        "sessions.changed",
    ] {
        all.push(except(
            Box::leak(format!("event:{event}/recipientProfileId").into_boxed_str()),
            "user-profile routing of events: clawgate routes by verified user, no profile ids",
        ));
    }
    all.extend_from_slice(crate::CHAT_V4);
    let families: [(&[&str], &'static str); 6] = [
        (
            SETTINGS,
            "per-session model, runtime and thinking settings: clawgate keeps none (the runner's model is in `defaults`)",
        ),
        (
            USAGE,
            "per-session token accounting is not kept (usage is reported on each run's `final`)",
        ),
        (
            SHARING,
            "session sharing and participants: a clawgate session belongs to one user",
        ),
        (
            RUN_SUMMARY,
            "run summaries are not kept per session (runs are the runner's; `hasActiveRun` says whether one is in flight)",
        ),
        (
            PRESENTATION,
            "UI presentation state (icons, boards, pins, archive) is not kept",
        ),
        (
            ADDED,
            "clawgate adds the owner, message count, preview and last activity",
        ),
    ];
    for (fields, why) in families {
        all.extend(except_under(&ROWS, fields, why));
    }
    all.extend(except_under(
        &["res:sessions.list/payload/sessions/0"],
        &["activeRunIds"],
        "listed only while a run is in flight: the replayed run (a mock model answering at once) may be over by then",
    ));
    all.push(except(
        "res:sessions.describe/payload/session/hasActiveRun",
        "clawgate adds whether a run is in flight (OpenClaw's list rows say it, its descriptions do not)",
    ));
    all.extend(except_under(
        &["event:sessions.changed/payload"],
        PHASE_ROW,
        "a run's phase event carries no session row: clawgate's run events name the session by key",
    ));
    all.extend(except_under(
        &[
            "event:sessions.changed/payload",
            "event:sessions.changed/payload/session",
            "event:session.message/payload",
            "event:session.message/payload/session",
        ],
        &["hasActiveRun", "activeRunIds"],
        "whether a run is in flight is not part of a change event (listings and descriptions say)",
    ));
    all
}
