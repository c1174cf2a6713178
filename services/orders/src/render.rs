//! Orders as the API shows them.

use meshmart::{
    db::timestamp,
    proto::orders::{self as pb},
};

use crate::store::{OrderRecord, State};

pub(crate) fn order(record: OrderRecord) -> pb::Order {
    pb::Order {
        name: format!("orders/{}", record.order_id),
        customer_id: record.customer_id,
        lines: record
            .lines
            .into_iter()
            .map(|line| pb::OrderLine {
                product_id: line.product_id,
                quantity: line.quantity,
                unit_price: Some(line.unit_price),
            })
            .collect(),
        total: Some(record.total),
        state: state(record.state).into(),
        history: record
            .history
            .into_iter()
            .map(|transition| pb::Transition {
                state: state(transition.state).into(),
                time: Some(timestamp(transition.time_ms)),
                reason: transition.reason,
            })
            .collect(),
        failure_reason: record.failure_reason,
        shipping_address: Some(record.address),
        create_time: Some(timestamp(record.create_time_ms)),
        update_time: Some(timestamp(record.update_time_ms)),
    }
}

pub(crate) fn state(state: State) -> pb::State {
    match state {
        State::Pending => pb::State::Pending,
        State::Paid => pb::State::Paid,
        State::Shipped => pb::State::Shipped,
        State::Completed => pb::State::Completed,
        State::Failed => pb::State::Failed,
    }
}
