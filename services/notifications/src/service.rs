//! The gRPC face of notifications: the caller's own messages, read-only.

use meshmart::{
    db::timestamp,
    proto::notifications::{self as pb, notification_service_server::NotificationService},
};
use tonic::{Request, Response, Status};

use crate::{
    store::{NotificationRecord, Store},
    validate,
};

/// The notifications service.
#[derive(Debug, Clone)]
pub struct Notifications {
    store: Store,
}

impl Notifications {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }
}

#[tonic::async_trait]
impl NotificationService for Notifications {
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_notification(
        &self,
        request: Request<pb::GetNotificationRequest>,
    ) -> Result<Response<pb::GetNotificationResponse>, Status> {
        let customer = meshmart::customer::of(&request)?;
        let id = validate::notification_name(&request.get_ref().name)?;
        let record = self.store.get(&customer, &id).await?;
        Ok(Response::new(pb::GetNotificationResponse {
            notification: Some(notification(record)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let customer = meshmart::customer::of(&request)?;
        let page = validate::list(request.get_ref())?;
        let (records, more) = self
            .store
            .list(
                &customer,
                page.order_id.as_deref(),
                page.after.as_deref(),
                page.size,
            )
            .await?;
        let next_page_token = match records.last() {
            Some(last) if more => meshmart::page_token::encode(&last.notification_id),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: records.into_iter().map(notification).collect(),
            next_page_token,
        }))
    }
}

fn notification(record: NotificationRecord) -> pb::Notification {
    let kind = record
        .kind
        .map_or(pb::notification::Kind::Unspecified, |kind| kind.proto());
    pb::Notification {
        name: format!("notifications/{}", record.notification_id),
        notification_id: record.notification_id,
        customer_id: record.customer_id,
        order_id: record.order_id,
        kind: kind.into(),
        subject: record.subject,
        body: record.body,
        create_time: Some(timestamp(record.create_time_ms)),
    }
}
