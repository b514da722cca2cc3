//! The writer task of one socket: the only code that writes to the WebSocket.
//!
//! Invariants: it takes everything queued at once, feeds it all and flushes once
//! (one syscall burst per batch, not per frame); a close frame is the last thing
//! it writes; WebSocket pings start only after the handshake; it stops at the
//! first write error.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::SinkExt;
use futures_util::stream::SplitSink;

use crate::out::{OutQueue, Outbound};
use crate::queue::Popped;

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

pub async fn run_writer(
    mut sink: SplitSink<WebSocket, Message>,
    queue: Arc<OutQueue>,
    ping_interval: Duration,
) {
    let mut ping = tokio::time::interval(ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pinging = false;
    loop {
        tokio::select! {
            popped = queue.pop_all() => {
                let items = match popped {
                    Popped::Items(items) => items,
                    Popped::Overflowed | Popped::Closed => {
                        let _ = sink.close().await;
                        return;
                    }
                };
                for item in items {
                    match item {
                        Outbound::Text(text) => {
                            if sink.feed(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                        }
                        Outbound::StartPing => {
                            pinging = true;
                            ping.reset();
                        }
                        Outbound::Close(code, reason) => {
                            let frame = CloseFrame {
                                code,
                                reason: close_reason(&reason).into(),
                            };
                            let _ = sink.feed(Message::Close(Some(frame))).await;
                            let _ = sink.flush().await;
                            return;
                        }
                    }
                }
                if sink.flush().await.is_err() {
                    return;
                }
            }
            _ = ping.tick(), if pinging => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_are_truncated_on_char_boundaries() {
        let long = "é".repeat(100);
        let reason = close_reason(&long);
        assert!(reason.len() <= 123);
        assert!(long.starts_with(&reason));
        assert_eq!(close_reason("slow consumer"), "slow consumer");
    }
}
