//! grpc.health.v1, served by every service, with a drain that a health watcher cannot hold up.
//!
//! Written here rather than taken from tonic-health's reporter because its `Watch` streams
//! never end: a client-side health checker (gRPC's own, or a sidecar's) would keep a call
//! open through the whole grace period of every shutdown. Here, once the drain starts, each
//! `Watch` stream sends the last status (NOT_SERVING) and then ends with UNAVAILABLE, the
//! code that tells a health-checking client to reconnect elsewhere. The protocol types
//! still come from tonic-health.

use std::{collections::HashMap, pin::Pin, sync::Arc};

use tokio::sync::{mpsc, watch};
use tokio_stream::{Stream, wrappers::ReceiverStream};
use tonic::{Request, Response, Status};
use tonic_health::pb::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_server::HealthServer,
};

/// What health reports: a status per gRPC service name (`""` is the server as a whole),
/// and whether the drain has started.
#[derive(Debug, Clone, Default)]
struct Snapshot {
    statuses: HashMap<String, ServingStatus>,
    draining: bool,
}

impl Snapshot {
    fn status(&self, service: &str) -> ServingStatus {
        self.statuses
            .get(service)
            .copied()
            .unwrap_or(ServingStatus::ServiceUnknown)
    }
}

/// The handle a server keeps to change what health reports.
#[derive(Debug, Clone)]
pub struct Health {
    state: Arc<watch::Sender<Snapshot>>,
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(Snapshot::default())),
        }
    }

    /// Sets the status of every service in `services`, and of the server as a whole.
    pub fn set_all(&self, services: &[&str], status: ServingStatus) {
        self.state.send_modify(|snapshot| {
            for service in services.iter().copied().chain([""]) {
                snapshot.statuses.insert(service.to_owned(), status);
            }
        });
    }

    /// Reports NOT_SERVING for everything and ends every `Watch` stream, now and later.
    pub fn start_drain(&self) {
        self.state.send_modify(|snapshot| {
            for status in snapshot.statuses.values_mut() {
                *status = ServingStatus::NotServing;
            }
            snapshot.draining = true;
        });
    }

    /// The gRPC service that answers `Check` and `Watch` from this handle.
    pub fn service(&self) -> HealthServer<HealthService> {
        HealthServer::new(HealthService {
            state: self.state.subscribe(),
        })
    }
}

/// The grpc.health.v1.Health service.
#[derive(Debug, Clone)]
pub struct HealthService {
    state: watch::Receiver<Snapshot>,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl tonic_health::pb::health_server::Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let service = &request.get_ref().service;
        match self.state.borrow().status(service) {
            // The protocol asks for NOT_FOUND here, and SERVICE_UNKNOWN only from Watch.
            ServingStatus::ServiceUnknown => {
                Err(Status::not_found(format!("unknown service {service:?}")))
            }
            status => Ok(Response::new(HealthCheckResponse {
                status: status.into(),
            })),
        }
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let service = request.into_inner().service;
        let mut state = self.state.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut last = None;
            loop {
                let (status, draining) = {
                    let snapshot = state.borrow_and_update();
                    (snapshot.status(&service), snapshot.draining)
                };
                if last != Some(status) {
                    let update = HealthCheckResponse {
                        status: status.into(),
                    };
                    if tx.send(Ok(update)).await.is_err() {
                        return;
                    }
                    last = Some(status);
                }
                if draining {
                    let ended = Status::unavailable("the server is shutting down");
                    let _ = tx.send(Err(ended)).await;
                    return;
                }
                tokio::select! {
                    changed = state.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
