//! An inventory that answers BatchGetStock with fixed stock, records every call and the
//! metadata it came with, and can be told to hold calls until released.

use std::sync::Arc;

use meshmart::{
    proto::inventory::{
        self as pb,
        inventory_service_server::{InventoryService, InventoryServiceServer},
    },
    testing::TestServer,
};
use tokio::sync::{Mutex, Notify, Semaphore};
use tonic::{Request, Response, Status, metadata::MetadataMap};

#[derive(Debug, Default)]
pub struct Recorded {
    /// The product ids of each BatchGetStock call.
    pub batches: Vec<Vec<String>>,
    pub metadata: Vec<MetadataMap>,
}

#[derive(Clone, Default)]
pub struct FakeInventory {
    pub recorded: Arc<Mutex<Recorded>>,
    /// Signalled when a call arrives.
    pub arrived: Arc<Notify>,
    /// When set, calls wait for a permit before answering.
    pub gate: Option<Arc<Semaphore>>,
}

impl FakeInventory {
    pub fn gated() -> Self {
        Self {
            gate: Some(Arc::new(Semaphore::new(0))),
            ..Self::default()
        }
    }

    pub async fn spawn(self) -> TestServer<tonic::transport::Error> {
        let config = meshmart::testing::server_config(inventory::SERVICE);
        TestServer::spawn(&config, |listeners, shutdown| {
            tonic::transport::Server::builder()
                .add_service(InventoryServiceServer::new(self))
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listeners.grpc),
                    shutdown,
                )
        })
        .await
    }
}

fn unimplemented<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not in the fake"))
}

#[tonic::async_trait]
impl InventoryService for FakeInventory {
    async fn batch_get_stock(
        &self,
        request: Request<pb::BatchGetStockRequest>,
    ) -> Result<Response<pb::BatchGetStockResponse>, Status> {
        {
            let mut recorded = self.recorded.lock().await;
            recorded.metadata.push(request.metadata().clone());
            recorded.batches.push(request.get_ref().product_ids.clone());
        }
        self.arrived.notify_one();
        if let Some(gate) = &self.gate {
            let _permit = gate
                .acquire()
                .await
                .map_err(|_| Status::aborted("gate closed"))?;
        }
        let stocks = request
            .into_inner()
            .product_ids
            .into_iter()
            .map(|product_id| pb::Stock {
                product_id,
                available_quantity: 7,
                ..pb::Stock::default()
            })
            .collect();
        Ok(Response::new(pb::BatchGetStockResponse { stocks }))
    }

    async fn get_stock(
        &self,
        _: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        unimplemented()
    }
    async fn set_stock(
        &self,
        _: Request<pb::SetStockRequest>,
    ) -> Result<Response<pb::SetStockResponse>, Status> {
        unimplemented()
    }
    async fn adjust_stock(
        &self,
        _: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        unimplemented()
    }
    async fn reserve_stock(
        &self,
        _: Request<pb::ReserveStockRequest>,
    ) -> Result<Response<pb::ReserveStockResponse>, Status> {
        unimplemented()
    }
    async fn get_reservation(
        &self,
        _: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        unimplemented()
    }
    async fn release_reservation(
        &self,
        _: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        unimplemented()
    }
    async fn commit_reservation(
        &self,
        _: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        unimplemented()
    }
}
