//! The gRPC face of the inventory: check the request, ask the store, shape the reply.

use meshmart::{
    db::timestamp,
    proto::inventory::{self as pb, inventory_service_server::InventoryService},
};
use tonic::{Request, Response, Status};

use crate::{
    metrics::Metrics,
    store::{Applied, Reservation, ReservationState, StockLevel, Store},
    validate,
};

/// The inventory service.
#[derive(Debug, Clone)]
pub struct Inventory {
    store: Store,
    metrics: Metrics,
}

impl Inventory {
    pub(crate) fn new(store: Store, metrics: Metrics) -> Self {
        Self { store, metrics }
    }
}

#[tonic::async_trait]
impl InventoryService for Inventory {
    #[tracing::instrument(level = "debug", skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let request = request.into_inner();
        validate::product_id("product_id", &request.product_id)?;
        let levels = self.store.stock_levels(vec![request.product_id]).await?;
        Ok(Response::new(pb::GetStockResponse {
            stock: levels.into_iter().next().map(stock),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(products = request.get_ref().product_ids.len()))]
    async fn batch_get_stock(
        &self,
        request: Request<pb::BatchGetStockRequest>,
    ) -> Result<Response<pb::BatchGetStockResponse>, Status> {
        let request = request.into_inner();
        validate::batch_get(&request)?;
        let levels = self.store.stock_levels(request.product_ids).await?;
        Ok(Response::new(pb::BatchGetStockResponse {
            stocks: levels.into_iter().map(stock).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn set_stock(
        &self,
        request: Request<pb::SetStockRequest>,
    ) -> Result<Response<pb::SetStockResponse>, Status> {
        let request = request.into_inner();
        validate::set_stock(&request)?;
        let (level, _) = self
            .store
            .set_stock(
                &request.request_id,
                &request.product_id,
                request.available_quantity,
            )
            .await?;
        Ok(Response::new(pb::SetStockResponse {
            stock: Some(stock(level)),
        }))
    }

    #[tracing::instrument(skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        let request = request.into_inner();
        validate::adjust_stock(&request)?;
        let (level, _) = self
            .store
            .adjust_stock(&request.request_id, &request.product_id, request.delta)
            .await?;
        Ok(Response::new(pb::AdjustStockResponse {
            stock: Some(stock(level)),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn reserve_stock(
        &self,
        request: Request<pb::ReserveStockRequest>,
    ) -> Result<Response<pb::ReserveStockResponse>, Status> {
        let request = request.into_inner();
        let items = validate::reserve(&request)?;
        let result = self.store.reserve(&request.reservation_id, &items).await;
        match &result {
            Ok((_, Applied::Now)) => {
                self.metrics.reservation("reserved");
                let units: i64 = items.iter().map(|(_, quantity)| quantity).sum();
                self.metrics
                    .reserved_units
                    .inc_by(u64::try_from(units).unwrap_or_default());
            }
            Ok((_, Applied::Earlier)) => self.metrics.reservation("replayed"),
            Err(crate::Error::InsufficientStock { .. }) => {
                self.metrics.reservation("insufficient_stock")
            }
            Err(_) => {}
        }
        let (reservation, _) = result?;
        Ok(Response::new(pb::ReserveStockResponse {
            reservation: Some(reservation_message(reservation)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn get_reservation(
        &self,
        request: Request<pb::GetReservationRequest>,
    ) -> Result<Response<pb::GetReservationResponse>, Status> {
        let request = request.into_inner();
        validate::reservation_id(&request.reservation_id)?;
        let reservation = self.store.reservation(&request.reservation_id).await?;
        Ok(Response::new(pb::GetReservationResponse {
            reservation: Some(reservation_message(reservation)),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        let request = request.into_inner();
        validate::reservation_id(&request.reservation_id)?;
        let (reservation, _) = self.store.release(&request.reservation_id).await?;
        Ok(Response::new(pb::ReleaseReservationResponse {
            reservation: Some(reservation_message(reservation)),
        }))
    }

    #[tracing::instrument(skip_all, fields(reservation_id = %request.get_ref().reservation_id))]
    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let request = request.into_inner();
        validate::reservation_id(&request.reservation_id)?;
        let (reservation, _) = self.store.commit(&request.reservation_id).await?;
        Ok(Response::new(pb::CommitReservationResponse {
            reservation: Some(reservation_message(reservation)),
        }))
    }
}

fn stock(level: StockLevel) -> pb::Stock {
    pb::Stock {
        product_id: level.product_id,
        available_quantity: level.available,
        reserved_quantity: level.reserved,
        update_time: level.update_time_ms.map(timestamp),
    }
}

fn reservation_message(reservation: Reservation) -> pb::Reservation {
    let state = match reservation.state {
        ReservationState::Active => pb::ReservationState::Active,
        ReservationState::Released => pb::ReservationState::Released,
        ReservationState::Committed => pb::ReservationState::Committed,
    };
    pb::Reservation {
        reservation_id: reservation.reservation_id,
        items: reservation
            .items
            .into_iter()
            .map(|(product_id, quantity)| pb::ReservationItem {
                product_id,
                quantity,
            })
            .collect(),
        state: state.into(),
        create_time: Some(timestamp(reservation.create_time_ms)),
        update_time: Some(timestamp(reservation.update_time_ms)),
        expire_time: reservation.expire_time_ms.map(timestamp),
        expired: reservation.expired,
    }
}
