//! `OrchestratorService`: the sagas, read-only.

use meshmart::{
    db::timestamp,
    proto::orchestrator::{self as pb, orchestrator_service_server::OrchestratorService},
};
use tonic::{Request, Response, Status};

use crate::{
    saga::{Saga, State},
    store::{Step, Store},
    validate,
};

/// The orchestrator's saga service.
#[derive(Debug, Clone)]
pub struct Orchestrator {
    store: Store,
}

impl Orchestrator {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl OrchestratorService for Orchestrator {
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_saga(
        &self,
        request: Request<pb::GetSagaRequest>,
    ) -> Result<Response<pb::GetSagaResponse>, Status> {
        let order_id = validate::saga_name(&request.get_ref().name)?;
        let (saga, steps) = self.store.get(&order_id).await?;
        Ok(Response::new(pb::GetSagaResponse {
            saga: Some(to_proto(saga, steps)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_sagas(
        &self,
        request: Request<pb::ListSagasRequest>,
    ) -> Result<Response<pb::ListSagasResponse>, Status> {
        let page = validate::list_sagas(request.get_ref())?;
        let (sagas, more) = self
            .store
            .list(page.state, page.after.as_deref(), page.size)
            .await?;
        let next_page_token = match sagas.last() {
            Some((last, _)) if more => meshmart::page_token::encode(&last.order_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListSagasResponse {
            sagas: sagas
                .into_iter()
                .map(|(saga, steps)| to_proto(saga, steps))
                .collect(),
            next_page_token,
        }))
    }
}

fn state(state: State) -> pb::saga::State {
    match state {
        State::AwaitingPayment => pb::saga::State::AwaitingPayment,
        State::AwaitingShipment => pb::saga::State::AwaitingShipment,
        State::Completed => pb::saga::State::Completed,
        State::Compensating => pb::saga::State::Compensating,
        State::Failed => pb::saga::State::Failed,
    }
}

fn to_proto(saga: Saga, steps: Vec<Step>) -> pb::Saga {
    pb::Saga {
        name: format!("sagas/{}", saga.order_id),
        state: state(saga.state).into(),
        order_id: saga.order_id,
        paid: saga.paid,
        shipped: saga.shipped,
        charge_id: saga.charge_id,
        failure_reason: saga.failure_reason,
        steps: steps
            .into_iter()
            .map(|step| pb::SagaStep {
                description: step.description,
                event_id: step.event_id,
                create_time: Some(timestamp(step.create_time_ms)),
            })
            .collect(),
        create_time: Some(timestamp(saga.create_time_ms)),
        update_time: Some(timestamp(saga.update_time_ms)),
    }
}
