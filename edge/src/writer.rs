//! The WebSocket of one socket, driven from the socket's own task: it writes what
//! the socket's [`Out`] holds and reads the client's next message. There is no
//! writer task and no split of the WebSocket into halves, so an idle socket is one
//! task and one WebSocket.
//!
//! Invariants:
//! - this is the only code that writes to the WebSocket;
//! - it hands tungstenite every frame it accepts and flushes once when the queue
//!   is empty (one syscall burst per batch, not per frame); a frame leaves the
//!   [`Out`] queue only when tungstenite takes it, so the queue's backlog is what
//!   the client has not been sent yet;
//! - a close frame is the last thing it writes; once it is written (or the queue
//!   was closed quietly and drained, or a write failed) the write side is done;
//! - a WebSocket ping goes out ahead of queued frames, when the socket asks for it
//!   (pings start only after the handshake);
//! - every step is synchronous inside one poll, so dropping a pending
//!   [`Wire::next`] (another branch of a `select!` won) loses nothing.

use std::future::poll_fn;
use std::task::{Context, Poll};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};

use crate::out::{Out, Outbound};

/// Close reasons are limited to 123 bytes by RFC 6455.
fn close_reason(reason: &str) -> String {
    if reason.len() <= 123 {
        return reason.to_owned();
    }
    let mut end = 123;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

/// One read from the WebSocket: a message, an error, or `None` at its end.
pub type Received = Option<Result<Message, axum::Error>>;

/// What [`Wire::next`] produced.
pub enum Io {
    /// The client sent something (or its side ended).
    Read(Received),
    /// The write side is done: nothing more can be written.
    WriteDone,
}

/// One socket's WebSocket and the state of its write side.
pub struct Wire {
    ws: WebSocket,
    /// Frames handed to tungstenite since the last successful flush.
    unflushed: bool,
    /// A ping is to be written before the next queued frame.
    ping_due: bool,
    /// The close frame was handed to tungstenite.
    close_sent: bool,
    /// Nothing more will be written.
    done: bool,
}

impl Wire {
    pub fn new(ws: WebSocket) -> Self {
        Self {
            ws,
            unflushed: false,
            ping_due: false,
            close_sent: false,
            done: false,
        }
    }

    /// Asks for a ping frame, written ahead of whatever is queued.
    pub fn ping(&mut self) {
        self.ping_due = true;
    }

    /// Writes what can be written now without waiting (the task is woken when the
    /// socket can take more). Returns whether the write side is done.
    pub async fn write_now(&mut self, out: &mut Out) -> bool {
        poll_fn(|cx| Poll::Ready(self.poll_write(out, cx).is_ready())).await
    }

    /// Writes `out` while waiting for the client's next message; returns that
    /// message, or [`Io::WriteDone`] when the write side ended first.
    pub async fn next(&mut self, out: &mut Out) -> Io {
        poll_fn(|cx| {
            if self.poll_write(out, cx).is_ready() {
                return Poll::Ready(Io::WriteDone);
            }
            self.ws.poll_next_unpin(cx).map(Io::Read)
        })
        .await
    }

    /// Writes until the write side is done: everything queued, then the close
    /// frame (or a plain end of the WebSocket when the socket closed quietly).
    /// Callers bound this with the close grace period.
    pub async fn finish(&mut self, out: &mut Out) {
        poll_fn(|cx| self.poll_write(out, cx)).await;
    }

    /// Advances the write side; `Ready` once it is done.
    fn poll_write(&mut self, out: &mut Out, cx: &mut Context<'_>) -> Poll<()> {
        if self.done {
            return Poll::Ready(());
        }
        while !self.close_sent && (self.ping_due || out.has_queued()) {
            match self.ws.poll_ready_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return self.end(),
                Poll::Ready(Ok(())) => {}
            }
            let message = if self.ping_due {
                self.ping_due = false;
                Message::Ping(Bytes::new())
            } else {
                match out.pop() {
                    Some(Outbound::Text(text)) => Message::Text(text.into()),
                    Some(Outbound::Close(code, reason)) => {
                        self.close_sent = true;
                        Message::Close(Some(CloseFrame {
                            code,
                            reason: close_reason(&reason).into(),
                        }))
                    }
                    None => break,
                }
            };
            if self.ws.start_send_unpin(message).is_err() {
                return self.end();
            }
            self.unflushed = true;
        }
        if self.unflushed {
            match self.ws.poll_flush_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(_)) => return self.end(),
                Poll::Ready(Ok(())) => self.unflushed = false,
            }
        }
        out.release_spare();
        if self.close_sent {
            return self.end();
        }
        if out.is_closing() && !out.has_queued() {
            // Closed without a close frame of ours: end the WebSocket.
            if self.ws.poll_close_unpin(cx).is_pending() {
                return Poll::Pending;
            }
            return self.end();
        }
        Poll::Pending
    }

    fn end(&mut self) -> Poll<()> {
        self.done = true;
        Poll::Ready(())
    }
}

/// What one read from the socket produced.
pub enum Read {
    Text(String),
    /// Ping, pong: nothing to do.
    Skip,
    /// Over the size limit.
    TooBig,
    /// Closed or failed.
    End,
}

pub fn read_text(message: Received, limit: usize) -> Read {
    let text = match message {
        None | Some(Ok(Message::Close(_))) => return Read::End,
        Some(Err(err)) => {
            return if is_too_big(err) {
                Read::TooBig
            } else {
                Read::End
            };
        }
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => return Read::Skip,
        Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
        // Binary frames are read as text, as OpenClaw does.
        Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
    };
    if text.len() > limit {
        Read::TooBig
    } else {
        Read::Text(text)
    }
}

fn is_too_big(err: axum::Error) -> bool {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    err.into_inner()
        .downcast_ref::<WsError>()
        .is_some_and(|err| matches!(err, WsError::Capacity(CapacityError::MessageTooLong { .. })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use axum::extract::ws::WebSocketUpgrade;
    use serde_json::json;
    use tokio::net::TcpStream;
    use tokio_tungstenite::WebSocketStream;
    use tokio_tungstenite::tungstenite::Message as Client;

    type ClientWs = WebSocketStream<TcpStream>;

    /// A server-side [`Wire`] and the client connected to it.
    async fn pair() -> (Wire, ClientWs) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::channel::<WebSocket>(1);
        let app = axum::Router::new().fallback(move |upgrade: WebSocketUpgrade| {
            let tx = tx.clone();
            async move {
                upgrade.on_upgrade(move |ws| async move {
                    let _ = tx.send(ws).await;
                })
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        // A small receive buffer, so a client that stops reading stalls writes soon.
        let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
        tcp.set_recv_buffer_size(8 * 1024).expect("buffer size");
        let tcp = tcp.connect(addr).await.expect("connect");
        let (client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
            .await
            .expect("handshake");
        let mut rx = rx;
        let ws = rx.recv().await.expect("upgraded");
        (Wire::new(ws), client)
    }

    async fn recv(client: &mut ClientWs) -> Client {
        tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("frame")
    }

    #[test]
    fn close_reasons_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let reason = close_reason(&long);
        assert!(reason.len() <= 123);
        assert!(long.starts_with(&reason));
        assert_eq!(close_reason("slow consumer"), "slow consumer");
    }

    #[tokio::test]
    async fn writes_in_order_and_the_close_frame_ends_the_write_side() {
        let (mut wire, mut client) = pair().await;
        let mut out = Out::new(1 << 20);
        out.unnumbered("a", &json!({}));
        out.unnumbered("b", &json!({}));
        out.close(4000, "bye");
        out.unnumbered("late", &json!({}));
        assert!(matches!(wire.next(&mut out).await, Io::WriteDone));
        for event in ["a", "b"] {
            match recv(&mut client).await {
                Client::Text(text) => assert!(text.contains(&format!("\"{event}\"")), "{text}"),
                other => panic!("unexpected {other:?}"),
            }
        }
        match recv(&mut client).await {
            Client::Close(Some(frame)) => {
                assert_eq!(
                    (u16::from(frame.code), frame.reason.as_str()),
                    (4000, "bye")
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn pings_go_out_when_asked() {
        let (mut wire, mut client) = pair().await;
        let mut out = Out::new(1 << 20);
        wire.ping();
        assert!(!wire.write_now(&mut out).await);
        assert!(matches!(recv(&mut client).await, Client::Ping(_)));
    }

    #[tokio::test]
    async fn a_quiet_close_ends_the_websocket_after_the_queue() {
        let (mut wire, mut client) = pair().await;
        let mut out = Out::new(1 << 20);
        out.unnumbered("a", &json!({}));
        out.close_quietly();
        tokio::time::timeout(Duration::from_secs(5), wire.finish(&mut out))
            .await
            .expect("finished");
        assert!(matches!(recv(&mut client).await, Client::Text(_)));
        assert!(matches!(recv(&mut client).await, Client::Close(None)));
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_holds_the_queue_not_the_reads() {
        let (mut wire, mut client) = pair().await;
        let mut out = Out::new(1 << 30);
        let big = json!("x".repeat(1 << 20));
        for n in 0..12 {
            out.response(&n.to_string(), Some(&big), None);
        }
        // Far more than the socket buffers take: writing stalls with frames left.
        assert!(!wire.write_now(&mut out).await);
        assert!(out.backlog() > 0, "everything was written");
        // Reads go on while writes are stalled.
        client
            .send(Client::Text("hello".into()))
            .await
            .expect("send");
        match tokio::time::timeout(Duration::from_secs(5), wire.next(&mut out)).await {
            Ok(Io::Read(Some(Ok(Message::Text(text))))) => assert_eq!(text.as_str(), "hello"),
            _ => panic!("the read did not come through"),
        }
        // Closing is bounded by the caller's grace period.
        out.close(1000, "");
        let finish = tokio::time::timeout(Duration::from_millis(300), wire.finish(&mut out));
        assert!(finish.await.is_err(), "a stalled client cannot be finished");
    }
}
