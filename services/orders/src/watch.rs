//! WatchOrder: the order now, then once more after each transition, until it is final.
//!
//! A watch wakes when this process's consumer moves the order on (an in-process
//! notification, at once), and polls the database every [`POLL_INTERVAL`] for what another
//! replica's consumer did. Each wake-up reads the order's state, one point read; the whole
//! order is read and sent only when the state changed.
//!
//! Every watch is bounded: it ends with DEADLINE_EXCEEDED at the call's deadline, and at
//! [`MAX_WATCH`] at the latest, deadline or not (so a forgotten watch does not hold a task
//! and a poll for good; the client watches again). The server's deadline layer bounds only
//! the response head, so the stream keeps its own time. When the service starts to drain,
//! every watch ends with UNAVAILABLE, as health watches do, so none holds the drain up.

use std::time::Duration;

use meshmart::proto::orders::{Order, WatchOrderResponse};
use tokio::{
    sync::{broadcast, mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;
use tracing::Instrument;

use crate::{render, store::Store};

/// How often a watch looks in the database for transitions made by other replicas: the
/// bound on how late it hears of them.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The longest a watch lasts, whatever its deadline.
pub(crate) const MAX_WATCH: Duration = Duration::from_secs(10 * 60);

/// Orders changed in this process, to wake their watches, and whether the drain began.
#[derive(Debug, Clone)]
pub(crate) struct Changes {
    changed: broadcast::Sender<String>,
    draining: watch::Sender<bool>,
}

impl Changes {
    /// Wake-ups a slow watch may fall behind by before it misses some; it then reads the
    /// order anyway, so nothing is lost but the spare read.
    const BACKLOG: usize = 1024;

    pub(crate) fn new() -> Self {
        Self {
            changed: broadcast::channel(Self::BACKLOG).0,
            draining: watch::channel(false).0,
        }
    }

    /// `order_id` moved on: its watches read it again.
    pub(crate) fn changed(&self, order_id: &str) {
        // No receivers (nobody watches) is fine.
        let _ = self.changed.send(order_id.to_owned());
    }

    /// The drain began: every watch ends.
    pub(crate) fn drain(&self) {
        self.draining.send_replace(true);
    }
}

/// The stream WatchOrder answers with.
pub(crate) type WatchStream = ReceiverStream<Result<WatchOrderResponse, Status>>;

/// Watches `order_id` (which the caller has read, as `first`, and may see) until it is
/// final, the deadline or [`MAX_WATCH`] comes, the drain begins, or the caller goes away.
pub(crate) fn start(
    store: Store,
    changes: &Changes,
    customer_id: String,
    first: Order,
    deadline: Option<Instant>,
) -> WatchStream {
    let watch = Watch {
        store,
        // Subscribed before the first read has been sent, so no transition falls between.
        changed: changes.changed.subscribe(),
        draining: changes.draining.subscribe(),
        customer_id,
    };
    let latest = Instant::now() + MAX_WATCH;
    let end = deadline.map_or(latest, |deadline| deadline.min(latest));
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(
        watch
            .run(first, end, sender)
            .instrument(tracing::Span::current()),
    );
    ReceiverStream::new(receiver)
}

struct Watch {
    store: Store,
    changed: broadcast::Receiver<String>,
    draining: watch::Receiver<bool>,
    customer_id: String,
}

type Sender = mpsc::Sender<Result<WatchOrderResponse, Status>>;

impl Watch {
    async fn run(mut self, first: Order, end: Instant, sender: Sender) {
        let order_id = first.name.trim_start_matches("orders/").to_owned();
        let mut sent = first.state();
        if !send(&sender, Ok(first), end).await || is_final(sent) {
            return;
        }
        let mut poll = tokio::time::interval(POLL_INTERVAL);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = sender.closed() => return,
                () = tokio::time::sleep_until(end) => {
                    return finish(&sender, Status::deadline_exceeded(
                        "the watch's deadline (or its longest time, 10 minutes) passed; watch again to go on",
                    )).await;
                }
                () = drained(&mut self.draining) => {
                    return finish(&sender, Status::unavailable(
                        "the server is shutting down; watch again",
                    )).await;
                }
                woken = self.changed.recv() => match woken {
                    Ok(changed) if changed != order_id => continue,
                    // Behind, or the service is going away: read it to be sure.
                    Ok(_) | Err(_) => {}
                },
                _ = poll.tick() => {}
            }
            let order = match self.read_if_moved(&order_id, sent).await {
                Ok(Some(order)) => order,
                Ok(None) => continue,
                Err(status) => return finish(&sender, status).await,
            };
            sent = order.state();
            if !send(&sender, Ok(order), end).await || is_final(sent) {
                return;
            }
        }
    }

    /// The order, when its state is no longer `sent`.
    async fn read_if_moved(
        &self,
        order_id: &str,
        sent: meshmart::proto::orders::State,
    ) -> Result<Option<Order>, Status> {
        match self.store.state(order_id).await? {
            Some(state) if render::state(state) == sent => Ok(None),
            _ => {
                let record = self.store.get(&self.customer_id, order_id).await?;
                Ok(Some(render::order(record)))
            }
        }
    }
}

/// Completes once the drain has begun.
async fn drained(draining: &mut watch::Receiver<bool>) {
    // The guard it returns is not Send; it is dropped here, before any await.
    let _ = draining.wait_for(|draining| *draining).await.map(drop);
}

/// How long the closing status may wait behind the messages a slow caller has not read.
/// Were it dropped, the stream would end as if it were complete (OK, no final state).
const CLOSING_WAIT: Duration = Duration::from_secs(1);

/// Ends the watch with `status` as its last word.
async fn finish(sender: &Sender, status: Status) {
    let _ = tokio::time::timeout(CLOSING_WAIT, sender.send(Err(status))).await;
}

/// Sends `item`, waiting while the caller reads slowly, but not past `end`. `false` when
/// the watch should end: the caller went away, or `end` came while waiting.
async fn send(sender: &Sender, item: Result<Order, Status>, end: Instant) -> bool {
    let item = item.map(|order| WatchOrderResponse { order: Some(order) });
    tokio::select! {
        sent = sender.send(item) => sent.is_ok(),
        () = tokio::time::sleep_until(end) => false,
    }
}

fn is_final(state: meshmart::proto::orders::State) -> bool {
    use meshmart::proto::orders::State as Proto;
    matches!(state, Proto::Completed | Proto::Failed)
}
