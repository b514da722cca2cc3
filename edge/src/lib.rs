//! clawgate's WebSocket edge: the only place that knows wire dialects.
//!
//! A stateless process part that accepts WebSocket clients speaking OpenClaw v3 or
//! goclaw, authenticates them through the auth service, turns their requests into
//! calls of the runner and session services, and fans run events from the event
//! bus out to every socket of the run's user, projected into each socket's dialect.
//!
//! Map of the crate (dependencies point down this list's layers, never up:
//! the dialects use the methods, the methods never a dialect's connection):
//! - [`server`]: router, upgrade, serving and graceful shutdown;
//! - `socket`: one socket's lifecycle (challenge, handshake, goodbye), one task
//!   per socket; `conn`: the authenticated loop and the seam to the dialects;
//! - `openclaw`, `goclaw`: per dialect only what is truly the dialect's:
//!   handshake, authorization rules, how answers and errors are sent, the
//!   projection of run and pairing events, and the connection side of
//!   `chat.send` and `health`;
//! - `methods`: every method, declared once per family (name, OpenClaw scope,
//!   goclaw role, params parser for both styles, what it runs); the
//!   advertised method list, the scope and role tables and dispatch derive
//!   from it;
//! - `state`: what the router and every socket share (services, config, hub,
//!   live-socket count, a socket's facts); it knows no dialect;
//! - `hub`: the process's one bus subscriber and per-socket inboxes;
//! - `health`: the cached health snapshot (services, event loop), refreshed in
//!   the background and observed by every OpenClaw connection;
//! - `queue`, `out`, `writer`: byte-bounded queues, frame numbering and
//!   backpressure, the socket's WebSocket (reads and batched writes);
//! - `frames`, `params`, [`session_key`], `time`: framing, params checks and
//!   naming styles, session keys, wire times;
//! - `notify`: typed pairing events and targeted disconnects for a tenant's
//!   sockets on every edge; [`registry`]: which pod holds a device's sockets,
//!   so a message for one device goes only to those pods' inboxes;
//!   `nodes`: this edge's node sockets and its calls to nodes on any edge
//!   (through the node registry and the pods' inboxes).
//!
//! Event routing: a socket that sees only its own user's runs (an operator or
//! viewer) is on its user's topic; one that sees the whole tenant (an admin or
//! owner) is on its tenant's run topic instead, and receives every user's runs
//! of its tenant (see `hub`).
//!
//! Runs belong to runners, not sockets: closing a socket never aborts a run.

mod approvers;
pub mod config;
mod conn;
pub mod error;
mod frames;
mod goclaw;
mod health;
mod health_cache;
mod hub;
mod methods;
mod nodes;
mod notify;
mod openclaw;
mod out;
mod params;
mod presence;
mod presence_table;
mod queue;
pub mod registry;
pub mod server;
pub mod session_key;
mod socket;
mod state;
mod time;
mod version;
mod writer;

pub use config::EdgeConfig;
pub use error::EdgeError;
pub use server::Edge;
pub use state::EdgeServices;
