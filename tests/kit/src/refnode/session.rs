//! A connected node ([`Connected`]): a writer task and a reader task over the
//! split WebSocket. The reader matches `res` frames to pending requests by id,
//! swallows `tick`, queues every other event for the test, and answers each
//! `node.invoke.request` through the invoke handler with `node.invoke.result`
//! (§5.7). Also the node-role helper calls (§4.1) and clean close / abort.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::connect::{WsStream, close_info, frame_json, uuid_v4};
use super::types::{
    CODE_CLOSED, CODE_TIMEOUT, CloseInfo, Event, InvokeAnswer, InvokeReply, InvokeRequest, RpcError,
};

/// Events kept for `next_event` after being skipped by a wait for another name.
const BACKLOG_LIMIT: usize = 1024;
/// How long [`Connected::close`] waits for the gateway's closing handshake.
const CLOSE_WAIT: Duration = Duration::from_secs(3);

type Handler = Arc<dyn Fn(InvokeRequest) -> BoxFuture<'static, InvokeReply> + Send + Sync>;

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by the reader, the writer, invoke tasks and the test.
struct Core {
    out: mpsc::UnboundedSender<Message>,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    node_id: String,
    call_timeout: Duration,
    handler: Mutex<Option<Handler>>,
    invoke_count: Arc<AtomicUsize>,
    invokes: Mutex<Vec<InvokeRequest>>,
    invokes_seen: watch::Sender<usize>,
    answers: Mutex<Vec<InvokeAnswer>>,
    answers_seen: watch::Sender<usize>,
    ticks: AtomicUsize,
    dropped_events: AtomicUsize,
    ended: watch::Sender<Option<CloseInfo>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Core {
    async fn call(&self, method: &str, params: Value, wait: Duration) -> Result<Value, RpcError> {
        if self.ended.borrow().is_some() {
            return Err(RpcError::client(CODE_CLOSED, "connection ended"));
        }
        let id = uuid_v4();
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id.clone(), tx);
        let frame = json!({"type": "req", "id": id, "method": method, "params": params});
        if self.out.send(Message::text(frame.to_string())).is_err() {
            lock(&self.pending).remove(&id);
            return Err(RpcError::client(CODE_CLOSED, "writer stopped"));
        }
        match timeout(wait, rx).await {
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(RpcError::client(
                    CODE_TIMEOUT,
                    format!("no response to {method} within {wait:?}"),
                ))
            }
            Ok(Err(_)) => Err(RpcError::client(
                CODE_CLOSED,
                format!("connection ended before the response to {method}"),
            )),
            Ok(Ok(res)) if res["ok"] == true => {
                Ok(res.get("payload").cloned().unwrap_or(Value::Null))
            }
            Ok(Ok(res)) => Err(RpcError::from_res(&res)),
        }
    }

    /// Records an invoke request and answers it in its own task.
    fn invoke(self: &Arc<Self>, request: InvokeRequest) {
        lock(&self.invokes).push(request.clone());
        self.invoke_count.fetch_add(1, Ordering::SeqCst);
        self.invokes_seen.send_modify(|seen| *seen += 1);
        let handler = lock(&self.handler).clone();
        let core = Arc::clone(self);
        let task = tokio::spawn(async move {
            let mut reply = match handler {
                Some(handler) => handler(request.clone()).await,
                None => InvokeReply::error("NO_HANDLER", "refnode: no invoke handler set"),
            };
            while let InvokeReply::Delayed(delay, inner) = reply {
                tokio::time::sleep(delay).await;
                reply = *inner;
            }
            let Some(sent) = reply.result_params(&request) else {
                return;
            };
            let response = core
                .call("node.invoke.result", sent.clone(), core.call_timeout)
                .await;
            lock(&core.answers).push(InvokeAnswer {
                invoke_id: request.id,
                command: request.command,
                sent,
                response,
            });
            core.answers_seen.send_modify(|seen| *seen += 1);
        });
        let mut tasks = lock(&self.tasks);
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }
}

/// A node after hello-ok. Dropping it aborts the connection like [`Connected::abort`].
pub struct Connected {
    /// The hello-ok payload.
    pub hello: Value,
    /// `hello.protocol`.
    pub protocol: u64,
    /// `hello.features.methods`.
    pub methods: Vec<String>,
    /// `hello.auth` (`Value::Null` when absent).
    pub auth: Value,
    /// The `connect.challenge` payload (`{nonce, ts, …}`).
    pub challenge: Value,
    /// Every `[minProtocol, maxProtocol]` offered, in order (more than one
    /// after a node-host fallback).
    pub offered: Vec<(u32, u32)>,
    core: Arc<Core>,
    events: tokio::sync::Mutex<mpsc::Receiver<Event>>,
    backlog: Mutex<VecDeque<Event>>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Connected {
    pub(crate) fn start(
        stream: WsStream,
        hello: Value,
        challenge: Value,
        node_id: String,
        call_timeout: Duration,
        event_buffer: usize,
    ) -> Self {
        let (sink, source) = stream.split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(event_buffer.max(1));
        let core = Arc::new(Core {
            out,
            pending: Mutex::new(HashMap::new()),
            node_id,
            call_timeout,
            handler: Mutex::new(None),
            invoke_count: Arc::new(AtomicUsize::new(0)),
            invokes: Mutex::new(Vec::new()),
            invokes_seen: watch::Sender::new(0),
            answers: Mutex::new(Vec::new()),
            answers_seen: watch::Sender::new(0),
            ticks: AtomicUsize::new(0),
            dropped_events: AtomicUsize::new(0),
            ended: watch::Sender::new(None),
            tasks: Mutex::new(Vec::new()),
        });
        let writer = tokio::spawn(write_loop(sink, out_rx));
        let reader = tokio::spawn(read_loop(source, Arc::clone(&core), events_tx));
        Self {
            protocol: hello["protocol"].as_u64().unwrap_or_default(),
            methods: hello["features"]["methods"]
                .as_array()
                .map(|methods| {
                    methods
                        .iter()
                        .filter_map(|m| m.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            auth: hello.get("auth").cloned().unwrap_or(Value::Null),
            hello,
            challenge,
            offered: Vec::new(),
            core,
            events: tokio::sync::Mutex::new(events),
            backlog: Mutex::new(VecDeque::new()),
            reader,
            writer,
        }
    }

    /// The node id this node answers invokes as (its device id).
    pub fn node_id(&self) -> &str {
        &self.core.node_id
    }

    /// `hello.auth.deviceToken`, if one was issued.
    pub fn device_token(&self) -> Option<String> {
        self.auth["deviceToken"].as_str().map(str::to_owned)
    }

    /// Calls `method` with the default timeout.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        self.core.call(method, params, self.core.call_timeout).await
    }

    /// Calls `method`, waiting at most `wait` for its response.
    pub async fn call_with_timeout(
        &self,
        method: &str,
        params: Value,
        wait: Duration,
    ) -> Result<Value, RpcError> {
        self.core.call(method, params, wait).await
    }

    /// Sets the invoke handler (sync). Replaces any earlier handler.
    pub fn on_invoke<F>(&self, handler: F)
    where
        F: Fn(&InvokeRequest) -> InvokeReply + Send + Sync + 'static,
    {
        *lock(&self.core.handler) = Some(Arc::new(move |request: InvokeRequest| {
            let reply = handler(&request);
            async move { reply }.boxed()
        }));
    }

    /// Sets an async invoke handler. Replaces any earlier handler.
    pub fn on_invoke_async<F, Fut>(&self, handler: F)
    where
        F: Fn(InvokeRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = InvokeReply> + Send + 'static,
    {
        *lock(&self.core.handler) = Some(Arc::new(move |request| handler(request).boxed()));
    }

    /// How many `node.invoke.request` events arrived so far.
    pub fn invokes_received(&self) -> usize {
        self.core.invoke_count.load(Ordering::SeqCst)
    }

    /// The counter behind [`Connected::invokes_received`], to keep after a move.
    pub fn invoke_counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.core.invoke_count)
    }

    /// Every invoke request received, in arrival order.
    pub fn invokes(&self) -> Vec<InvokeRequest> {
        lock(&self.core.invokes).clone()
    }

    /// Waits until at least `count` invoke requests have arrived; false on timeout.
    pub async fn wait_invokes(&self, count: usize, wait: Duration) -> bool {
        let mut seen = self.core.invokes_seen.subscribe();
        matches!(
            timeout(wait, seen.wait_for(|n| *n >= count)).await,
            Ok(Ok(_))
        )
    }

    /// Every `node.invoke.result` sent and the gateway's response to it.
    pub fn invoke_answers(&self) -> Vec<InvokeAnswer> {
        lock(&self.core.answers).clone()
    }

    /// Waits until at least `count` results have been answered by the gateway.
    pub async fn wait_answers(&self, count: usize, wait: Duration) -> bool {
        let mut seen = self.core.answers_seen.subscribe();
        matches!(
            timeout(wait, seen.wait_for(|n| *n >= count)).await,
            Ok(Ok(_))
        )
    }

    /// How many `tick` events arrived (they are not queued as events).
    pub fn ticks(&self) -> usize {
        self.core.ticks.load(Ordering::SeqCst)
    }

    /// Events dropped because the event channel was full.
    pub fn dropped_events(&self) -> usize {
        self.core.dropped_events.load(Ordering::SeqCst)
    }

    /// The next event named `name` within `wait`. Other events met on the way
    /// are kept (in order) for later calls.
    pub async fn next_event(&self, name: &str, wait: Duration) -> Option<Event> {
        {
            let mut backlog = lock(&self.backlog);
            if let Some(index) = backlog.iter().position(|event| event.name == name) {
                return backlog.remove(index);
            }
        }
        let deadline = Instant::now() + wait;
        let mut events = self.events.lock().await;
        loop {
            let event = timeout_at(deadline, events.recv()).await.ok()??;
            if event.name == name {
                return Some(event);
            }
            let mut backlog = lock(&self.backlog);
            if backlog.len() >= BACKLOG_LIMIT {
                backlog.pop_front();
            }
            backlog.push_back(event);
        }
    }

    /// The next event of any name within `wait`.
    pub async fn next_any_event(&self, wait: Duration) -> Option<Event> {
        if let Some(event) = lock(&self.backlog).pop_front() {
            return Some(event);
        }
        let mut events = self.events.lock().await;
        timeout(wait, events.recv()).await.ok()?
    }

    /// `node.event {event, payloadJSON}` (`payloadJSON` omitted for a null payload).
    pub async fn event(&self, event: &str, payload: Value) -> Result<Value, RpcError> {
        let params = if payload.is_null() {
            json!({"event": event})
        } else {
            json!({"event": event, "payloadJSON": payload.to_string()})
        };
        self.call("node.event", params).await
    }

    /// `node.pending.pull {}`.
    pub async fn pending_pull(&self) -> Result<Value, RpcError> {
        self.call("node.pending.pull", json!({})).await
    }

    /// `node.pending.ack {ids}`.
    pub async fn pending_ack(&self, ids: &[&str]) -> Result<Value, RpcError> {
        self.call("node.pending.ack", json!({"ids": ids})).await
    }

    /// `node.pending.drain {maxItems?}`.
    pub async fn pending_drain(&self, max_items: Option<u32>) -> Result<Value, RpcError> {
        let params = match max_items {
            Some(max) => json!({"maxItems": max}),
            None => json!({}),
        };
        self.call("node.pending.drain", params).await
    }

    /// `skills.bins {}`.
    pub async fn skills_bins(&self) -> Result<Value, RpcError> {
        self.call("skills.bins", json!({})).await
    }

    /// v3 `node.canvas.capability.refresh {}`.
    pub async fn canvas_refresh(&self) -> Result<Value, RpcError> {
        self.call("node.canvas.capability.refresh", json!({})).await
    }

    /// v4 `node.pluginSurface.refresh {surface}`.
    pub async fn plugin_surface_refresh(&self, surface: &str) -> Result<Value, RpcError> {
        self.call("node.pluginSurface.refresh", json!({"surface": surface}))
            .await
    }

    /// `health {}` (allowed for every role).
    pub async fn health(&self) -> Result<Value, RpcError> {
        self.call("health", json!({})).await
    }

    /// How the connection ended, once it has.
    pub fn closed(&self) -> Option<CloseInfo> {
        self.core.ended.borrow().clone()
    }

    /// Waits for the connection to end (e.g. the gateway closing it); `None` on timeout.
    pub async fn wait_closed(&self, wait: Duration) -> Option<CloseInfo> {
        let mut ended = self.core.ended.subscribe();
        let result = timeout(wait, ended.wait_for(Option::is_some)).await;
        match result {
            Ok(Ok(info)) => info.clone(),
            _ => None,
        }
    }

    /// Clean close: sends close 1000, waits for the gateway's reply, then stops.
    /// Returns how the connection ended (`None` if the reply did not come).
    pub async fn close(mut self) -> Option<CloseInfo> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "refnode close".into(),
        };
        if self.core.out.send(Message::Close(Some(frame))).is_err() {
            return self.closed();
        }
        let ended = self.wait_closed(CLOSE_WAIT).await;
        self.stop().await;
        ended
    }

    /// Drops the TCP connection without a close frame (a dying node).
    pub async fn abort(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        for task in lock(&self.core.tasks).drain(..) {
            task.abort();
        }
        // The socket is dropped once both halves (both tasks) are gone.
        let _ = (&mut self.reader).await;
        let _ = (&mut self.writer).await;
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        for task in lock(&self.core.tasks).drain(..) {
            task.abort();
        }
    }
}

async fn write_loop(
    mut sink: SplitSink<WsStream, Message>,
    mut out: mpsc::UnboundedReceiver<Message>,
) {
    while let Some(message) = out.recv().await {
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

async fn read_loop(
    mut source: SplitStream<WsStream>,
    core: Arc<Core>,
    events: mpsc::Sender<Event>,
) {
    let end = loop {
        match source.next().await {
            None => break close_info(None, "connection ended without a close frame"),
            Some(Err(error)) => break close_info(None, &format!("read failed: {error}")),
            Some(Ok(message @ Message::Close(_))) => break close_info(Some(&message), ""),
            Some(Ok(message)) => {
                if let Some(frame) = frame_json(&message) {
                    dispatch(&core, &events, frame);
                }
            }
        }
    };
    lock(&core.pending).clear();
    core.ended.send_replace(Some(end));
}

/// Routes one frame: responses to their caller, ticks counted, invoke
/// requests to the handler, every non-tick event to the test's channel.
fn dispatch(core: &Arc<Core>, events: &mpsc::Sender<Event>, frame: Value) {
    match frame["type"].as_str() {
        Some("res") => {
            let waiter = frame["id"]
                .as_str()
                .and_then(|id| lock(&core.pending).remove(id));
            if let Some(waiter) = waiter {
                let _ = waiter.send(frame);
            }
        }
        Some("event") => {
            let event = Event::from_frame(frame);
            match event.name.as_str() {
                "tick" => {
                    core.ticks.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                "node.invoke.request" => core.invoke(InvokeRequest::from_payload(&event.payload)),
                _ => {}
            }
            if events.try_send(event).is_err() {
                core.dropped_events.fetch_add(1, Ordering::SeqCst);
            }
        }
        _ => {}
    }
}
