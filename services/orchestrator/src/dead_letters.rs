//! `DeadLetterService`: the operator's view of the event bus's dead letters, of every
//! consumer group (`meshctl dlq`), and its one write, the replay.

mod json;

use meshmart::{
    db::timestamp,
    events::{Bus, DeadLetter, EventBus},
    proto::orchestrator::{self as pb, dead_letter_service_server::DeadLetterService},
};
use tonic::{Request, Response, Status};

use crate::{Error, Result, validate};

/// The most dead letters one listing reads from the bus. The bus lists from the oldest,
/// with no cursor of its own, so each page reads up to here and skips to the token; a
/// backlog beyond it is an incident to work through oldest first, not to page past.
pub(crate) const MAX_SCAN: usize = 10_000;

/// The dead-letter service, over the bus the orchestrator consumes from.
#[derive(Debug, Clone)]
pub struct DeadLetters {
    bus: Bus,
}

impl DeadLetters {
    pub(crate) fn new(bus: Bus) -> Self {
        Self { bus }
    }

    async fn find(&self, id: u64) -> Result<DeadLetter> {
        self.bus
            .find_dead_letter(id)
            .await
            .map_err(Error::Bus)?
            .ok_or(Error::DeadLetterNotFound(id))
    }
}

#[tonic::async_trait]
impl DeadLetterService for DeadLetters {
    #[tracing::instrument(level = "debug", skip_all, fields(consumer = %request.get_ref().consumer))]
    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        let page = validate::list_dead_letters(request.get_ref())?;
        let all = self
            .bus
            .dead_letters(page.consumer.as_deref(), MAX_SCAN)
            .await
            .map_err(Error::Bus)?;
        let mut after: Vec<DeadLetter> = all
            .into_iter()
            .filter(|letter| page.after.is_none_or(|after| letter.id > after))
            .take(page.size + 1)
            .collect();
        let more = after.len() > page.size;
        after.truncate(page.size);
        let next_page_token = match after.last() {
            Some(last) if more => meshmart::page_token::encode(&last.id.to_string()),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListDeadLettersResponse {
            dead_letters: after.into_iter().map(dead_letter).collect(),
            next_page_token,
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_dead_letter(
        &self,
        request: Request<pb::GetDeadLetterRequest>,
    ) -> Result<Response<pb::GetDeadLetterResponse>, Status> {
        let id = validate::dead_letter_name(&request.get_ref().name)?;
        let letter = self.find(id).await?;
        Ok(Response::new(pb::GetDeadLetterResponse {
            dead_letter: Some(dead_letter(letter)),
        }))
    }

    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn replay_dead_letter(
        &self,
        request: Request<pb::ReplayDeadLetterRequest>,
    ) -> Result<Response<pb::ReplayDeadLetterResponse>, Status> {
        let id = validate::dead_letter_name(&request.get_ref().name)?;
        let letter = self.find(id).await?;
        // Gone between the two calls (another operator replayed it): NOT_FOUND, which a
        // caller treats as done, as the contract says.
        if !self.bus.replay(id).await.map_err(Error::Bus)? {
            return Err(Error::DeadLetterNotFound(id).into());
        }
        tracing::info!(
            dead_letter_id = id,
            consumer = %letter.consumer,
            subject = %letter.subject,
            message_id = %letter.message_id,
            "dead letter replayed"
        );
        Ok(Response::new(pb::ReplayDeadLetterResponse {
            dead_letter: Some(dead_letter(letter)),
        }))
    }
}

fn dead_letter(letter: DeadLetter) -> pb::DeadLetter {
    pb::DeadLetter {
        name: format!("deadLetters/{}", letter.id),
        dead_letter_id: letter.id.to_string(),
        event_type: json::event_type(&letter.subject)
            .unwrap_or_default()
            .to_owned(),
        payload_json: json::render(&letter.subject, &letter.payload).unwrap_or_default(),
        consumer: letter.consumer,
        subject: letter.subject,
        message_id: letter.message_id,
        error: letter.error,
        attempts: i32::try_from(letter.attempts).unwrap_or(i32::MAX),
        dead_letter_time: Some(timestamp(letter.time_ms)),
    }
}
