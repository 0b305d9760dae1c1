//! The event streams (server-sent events): one operation's events, replayed from its start and
//! then live, ending after its `end` event; and every operation's events, live. Each SSE
//! message's data is a [`StreamEvent`]. Both end when the daemon shuts down.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::extract::Path;
use axum::extract::rejection::PathRejection;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;

use super::routes::{Failure, State, param, unknown_operation};
use crate::daemon::model::StreamEvent;

type Ctx = axum::extract::State<State>;

/// `GET /v1/operations/{id}/events`.
pub(super) async fn operation(
    ctx: Ctx,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, Failure> {
    let id = param(id)?;
    let Some((past, live)) = ctx.backend.subscribe(&id) else {
        return Err(unknown_operation(&id));
    };
    let stream = OneOperation {
        id,
        state: ctx.0.clone(),
        replay: past.into(),
        live,
        sent: 0,
        ended: false,
    }
    .into_stream();
    Ok(sse(&ctx, stream))
}

/// `GET /v1/events`.
pub(super) async fn all(ctx: Ctx) -> Response {
    let live = ctx.backend.subscribe_all();
    let stream = futures::stream::unfold(live, |mut live| async move {
        match live.recv().await {
            Ok(ev) => Some((message(&ev), live)),
            // A reader too slow for the daemon missed events: it is told how many.
            Err(RecvError::Lagged(n)) => Some((
                Event::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{n}}}")),
                live,
            )),
            Err(RecvError::Closed) => None,
        }
    });
    sse(&ctx, stream)
}

fn sse(ctx: &Ctx, stream: impl Stream<Item = Event> + Send + 'static) -> Response {
    let stream = stream
        .take_until(ctx.shutdown.clone().cancelled_owned())
        .map(Ok::<_, Infallible>);
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(ctx.sse_keep_alive))
        .into_response()
}

fn message(ev: &StreamEvent) -> Event {
    Event::default().data(serde_json::to_string(ev).unwrap_or_default())
}

fn is_end(ev: &StreamEvent) -> bool {
    ev.event.get("event").and_then(|e| e.as_str()) == Some("end")
}

/// The stream of one operation: what happened so far, then what happens, up to its end.
struct OneOperation {
    id: String,
    state: State,
    replay: VecDeque<StreamEvent>,
    live: Receiver<StreamEvent>,
    /// Events of this operation sent so far: after a lag, the replay is taken again past them.
    sent: usize,
    ended: bool,
}

impl OneOperation {
    fn into_stream(self) -> impl Stream<Item = Event> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move {
            let ev = s.next().await?;
            Some((message(&ev), s))
        })
    }

    async fn next(&mut self) -> Option<StreamEvent> {
        if self.ended {
            return None;
        }
        let ev = match self.replay.pop_front() {
            Some(ev) => ev,
            None => self.next_live().await?,
        };
        self.sent += 1;
        self.ended = is_end(&ev);
        Some(ev)
    }

    async fn next_live(&mut self) -> Option<StreamEvent> {
        loop {
            match self.live.recv().await {
                Ok(ev) if ev.operation == self.id => return Some(ev),
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    // Missed events: take the operation's events again and skip those sent.
                    let (past, live) = self.state.backend.subscribe(&self.id)?;
                    self.live = live;
                    self.replay = past.into_iter().skip(self.sent).collect();
                    if let Some(ev) = self.replay.pop_front() {
                        return Some(ev);
                    }
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
