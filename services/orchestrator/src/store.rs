//! Sagas and their steps in the orchestrator's own database (SQLite or PostgreSQL). Reads
//! go through `Pools::read`; writes happen in the consumer's transactions, through the
//! functions in [`tx`] that take its connection.

pub mod tx;

use std::collections::HashMap;

use crate::{
    Error, Result,
    saga::{Saga, State},
};

const COLUMNS: &str = "order_id, state, paid, shipped, charge_id, failure_reason, \
                       refund_requested, create_time_ms, update_time_ms";

type Row = (String, String, i64, i64, String, String, i64, i64, i64);

fn saga(
    (order_id, state, paid, shipped, charge_id, failure_reason, refund, created, updated): Row,
) -> Saga {
    Saga {
        order_id,
        // A state a newer release wrote reads as still running: the closest this release
        // can say.
        state: State::parse(&state).unwrap_or(State::AwaitingPayment),
        paid: paid != 0,
        shipped: shipped != 0,
        charge_id,
        failure_reason,
        refund_requested: refund != 0,
        create_time_ms: created,
        update_time_ms: updated,
    }
}

/// One recorded step of a saga.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub description: String,
    pub event_id: String,
    pub create_time_ms: i64,
}

meshmart::service_store!(Store);

impl Store {
    /// The saga of `order_id`, if any of its events has arrived.
    pub async fn find(&self, order_id: &str) -> Result<Option<Saga>, sqlx::Error> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM sagas WHERE order_id = $1"))
                .bind(order_id)
                .fetch_optional(self.db.read())
                .await?;
        Ok(row.map(saga))
    }

    /// The saga of `order_id` with its steps, oldest first.
    pub async fn get(&self, order_id: &str) -> Result<(Saga, Vec<Step>)> {
        let saga = self
            .find(order_id)
            .await?
            .ok_or_else(|| Error::SagaNotFound(order_id.to_owned()))?;
        let mut steps = self.steps(&[order_id.to_owned()]).await?;
        Ok((saga, steps.remove(order_id).unwrap_or_default()))
    }

    /// Up to `size` sagas oldest first (by creation, then order id), of one state or all,
    /// after the saga of `after` (the last of the previous page), with their steps; and
    /// whether more follow.
    pub async fn list(
        &self,
        state: Option<State>,
        after: Option<&str>,
        size: usize,
    ) -> Result<(Vec<(Saga, Vec<Step>)>, bool)> {
        let mut sql = format!("SELECT {COLUMNS} FROM sagas WHERE 1 = 1");
        let mut next = 1;
        if state.is_some() {
            sql.push_str(&format!(" AND state = ${next}"));
            next += 1;
        }
        if after.is_some() {
            // The token holds the previous page's last order id; its row says where to
            // go on.
            sql.push_str(&format!(
                " AND (create_time_ms, order_id) > \
                 (SELECT create_time_ms, order_id FROM sagas WHERE order_id = ${next})"
            ));
            next += 1;
        }
        sql.push_str(&format!(" ORDER BY create_time_ms, order_id LIMIT ${next}"));
        let mut query = sqlx::query_as::<_, Row>(&sql);
        if let Some(state) = state {
            query = query.bind(state.as_str());
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
        let mut sagas: Vec<Saga> = query
            .bind(limit)
            .fetch_all(self.db.read())
            .await?
            .into_iter()
            .map(saga)
            .collect();
        let more = sagas.len() > size;
        sagas.truncate(size);
        let ids: Vec<String> = sagas.iter().map(|s| s.order_id.clone()).collect();
        let mut steps = self.steps(&ids).await?;
        let page = sagas
            .into_iter()
            .map(|saga| {
                let own = steps.remove(&saga.order_id).unwrap_or_default();
                (saga, own)
            })
            .collect();
        Ok((page, more))
    }

    /// The steps of each of `order_ids`, oldest first, in one query.
    async fn steps(&self, order_ids: &[String]) -> Result<HashMap<String, Vec<Step>>> {
        let mut steps: HashMap<String, Vec<Step>> = HashMap::new();
        if order_ids.is_empty() {
            return Ok(steps);
        }
        let placeholders: Vec<String> = (1..=order_ids.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT order_id, description, event_id, create_time_ms FROM saga_steps \
             WHERE order_id IN ({}) ORDER BY order_id, seq",
            placeholders.join(", ")
        );
        let mut query = sqlx::query_as::<_, (String, String, String, i64)>(&sql);
        for id in order_ids {
            query = query.bind(id);
        }
        for (order_id, description, event_id, create_time_ms) in
            query.fetch_all(self.db.read()).await?
        {
            steps.entry(order_id).or_default().push(Step {
                description,
                event_id,
                create_time_ms,
            });
        }
        Ok(steps)
    }

    /// How many sagas are in each state, for the metrics.
    pub async fn count_by_state(&self) -> Result<Vec<(State, i64)>, sqlx::Error> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, COUNT(*) FROM sagas GROUP BY state")
                .fetch_all(self.db.read())
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(state, count)| Some((State::parse(&state)?, count)))
            .collect())
    }
}
