//! The gRPC face of payments: read-only views of the charges and refunds it made.

use meshmart::{
    db::timestamp,
    page_token,
    proto::{
        google::r#type::Money,
        payments::{self as pb, charge::State, payment_service_server::PaymentService},
    },
};
use tonic::{Request, Response, Status};

use crate::{
    store::{Amount, ChargeRecord, ChargeState, RefundRecord, Store},
    validate,
};

/// The payments service.
#[derive(Debug, Clone)]
pub struct Payments {
    store: Store,
}

impl Payments {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl PaymentService for Payments {
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_charge(
        &self,
        request: Request<pb::GetChargeRequest>,
    ) -> Result<Response<pb::GetChargeResponse>, Status> {
        let id = validate::resource_name(&request.get_ref().name, "charges")?;
        let record = self.store.charge(&id).await?;
        Ok(Response::new(pb::GetChargeResponse {
            charge: Some(charge(record)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_charges(
        &self,
        request: Request<pb::ListChargesRequest>,
    ) -> Result<Response<pb::ListChargesResponse>, Status> {
        let request = request.get_ref();
        let page = validate::page(
            request.page_size,
            &request.page_token,
            &request.order_id,
            "ListCharges",
        )?;
        let (records, more) = self.store.charges(&page).await?;
        let next_page_token = match records.last() {
            Some(last) if more => page_token::encode(&last.charge_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListChargesResponse {
            charges: records.into_iter().map(charge).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_refund(
        &self,
        request: Request<pb::GetRefundRequest>,
    ) -> Result<Response<pb::GetRefundResponse>, Status> {
        let id = validate::resource_name(&request.get_ref().name, "refunds")?;
        let record = self.store.refund(&id).await?;
        Ok(Response::new(pb::GetRefundResponse {
            refund: Some(refund(record)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_refunds(
        &self,
        request: Request<pb::ListRefundsRequest>,
    ) -> Result<Response<pb::ListRefundsResponse>, Status> {
        let request = request.get_ref();
        let page = validate::page(
            request.page_size,
            &request.page_token,
            &request.order_id,
            "ListRefunds",
        )?;
        let (records, more) = self.store.refunds(&page).await?;
        let next_page_token = match records.last() {
            Some(last) if more => page_token::encode(&last.refund_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListRefundsResponse {
            refunds: records.into_iter().map(refund).collect(),
            next_page_token,
        }))
    }
}

fn charge(record: ChargeRecord) -> pb::Charge {
    let state = match record.state {
        ChargeState::Succeeded => State::Succeeded,
        ChargeState::Declined => State::Declined,
        ChargeState::Failed => State::Failed,
    };
    pb::Charge {
        name: format!("charges/{}", record.charge_id),
        charge_id: record.charge_id,
        order_id: record.order_id,
        amount: Some(money(record.amount)),
        state: state.into(),
        failure_reason: record.failure_reason,
        attempts: record.attempts,
        card_brand: record.card_brand,
        create_time: Some(timestamp(record.create_time_ms)),
        update_time: Some(timestamp(record.update_time_ms)),
    }
}

fn refund(record: RefundRecord) -> pb::Refund {
    pb::Refund {
        name: format!("refunds/{}", record.refund_id),
        refund_id: record.refund_id,
        charge_id: record.charge_id,
        order_id: record.order_id,
        amount: Some(money(record.amount)),
        reason: record.reason,
        create_time: Some(timestamp(record.create_time_ms)),
    }
}

fn money(amount: Amount) -> Money {
    Money {
        currency_code: amount.currency_code,
        units: amount.units,
        nanos: amount.nanos,
    }
}
