//! Request checks. Each returns every problem at once as INVALID_ARGUMENT.

use meshmart::{
    proto::notifications::ListNotificationsRequest,
    validation::{FieldViolations, invalid_field, is_idempotency_key, is_resource_id},
};
use tonic::Status;

pub(crate) const DEFAULT_PAGE_SIZE: usize = 20;
pub(crate) const MAX_PAGE_SIZE: usize = 100;

/// The id in a `notifications/{notification_id}` name.
pub(crate) fn notification_name(name: &str) -> Result<String, Status> {
    name.strip_prefix("notifications/")
        .filter(|id| is_resource_id(id))
        .map(str::to_owned)
        .ok_or_else(|| invalid_field("name", "must be notifications/{notification_id}"))
}

/// One page of a listing: of which order (or all), after which notification, how many.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Page {
    pub(crate) order_id: Option<String>,
    pub(crate) after: Option<String>,
    pub(crate) size: usize,
}

pub(crate) fn list(request: &ListNotificationsRequest) -> Result<Page, Status> {
    let mut violations = FieldViolations::new();
    violations.check(request.page_size >= 0, "page_size", "must not be negative");
    violations.check(
        request.order_id.is_empty() || is_idempotency_key(&request.order_id),
        "order_id",
        "must be 1 to 128 letters, digits or ._:-",
    );
    let after = if request.page_token.is_empty() {
        None
    } else {
        let after =
            meshmart::page_token::decode(&request.page_token).filter(|id| is_resource_id(id));
        violations.check(
            after.is_some(),
            "page_token",
            "is not a token from an earlier ListNotifications call",
        );
        after
    };
    violations.into_result()?;
    let size = match usize::try_from(request.page_size).unwrap_or_default() {
        0 => DEFAULT_PAGE_SIZE,
        size => size.min(MAX_PAGE_SIZE),
    };
    Ok(Page {
        order_id: Some(request.order_id.clone()).filter(|id| !id.is_empty()),
        after,
        size,
    })
}
