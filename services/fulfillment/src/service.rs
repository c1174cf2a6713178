//! The gRPC face of fulfillment: read-only views of the shipments, without their addresses.

use meshmart::{
    db::timestamp,
    page_token,
    proto::fulfillment::{
        self as pb, fulfillment_service_server::FulfillmentService, shipment::State,
    },
};
use tonic::{Request, Response, Status};

use crate::{
    store::{ShipmentRecord, ShipmentState, Store},
    validate,
};

/// The fulfillment service.
#[derive(Debug, Clone)]
pub struct Fulfillment {
    store: Store,
}

impl Fulfillment {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl FulfillmentService for Fulfillment {
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_shipment(
        &self,
        request: Request<pb::GetShipmentRequest>,
    ) -> Result<Response<pb::GetShipmentResponse>, Status> {
        let id = validate::shipment_name(&request.get_ref().name)?;
        let record = self.store.shipment(&id).await?;
        Ok(Response::new(pb::GetShipmentResponse {
            shipment: Some(shipment(record)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_shipments(
        &self,
        request: Request<pb::ListShipmentsRequest>,
    ) -> Result<Response<pb::ListShipmentsResponse>, Status> {
        let request = request.get_ref();
        let page = validate::list(request.page_size, &request.page_token, &request.order_id)?;
        let (records, more) = self.store.shipments(&page).await?;
        let next_page_token = match records.last() {
            Some(last) if more => page_token::encode(&last.shipment_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListShipmentsResponse {
            shipments: records.into_iter().map(shipment).collect(),
            next_page_token,
        }))
    }
}

fn shipment(record: ShipmentRecord) -> pb::Shipment {
    let state = match record.state {
        ShipmentState::AwaitingPayment => State::AwaitingPayment,
        ShipmentState::Shipped => State::Shipped,
        ShipmentState::Failed => State::Failed,
        ShipmentState::Cancelled => State::Cancelled,
    };
    pb::Shipment {
        name: format!("shipments/{}", record.shipment_id),
        shipment_id: record.shipment_id,
        order_id: record.order_id,
        state: state.into(),
        lines: record
            .lines
            .into_iter()
            .map(|(product_id, quantity)| pb::ShipmentLine {
                product_id,
                quantity,
            })
            .collect(),
        tracking_number: record.tracking_number,
        failure_reason: record.failure_reason,
        region_code: record.region_code,
        create_time: Some(timestamp(record.create_time_ms)),
        update_time: Some(timestamp(record.update_time_ms)),
    }
}
