//! The calls CreateOrder makes before it stores anything: the catalog for the prices of the
//! moment, inventory to hold the stock. What each answer means for the caller is decided
//! here; the rest follows the shared rule (`meshmart::client::downstream_failure`).

use std::collections::HashMap;

use futures_util::future::join_all;
use meshmart::{
    client::MeshChannel,
    proto::{
        catalog::{GetProductRequest, catalog_service_client::CatalogServiceClient},
        google::r#type::Money,
        inventory::{
            ReservationItem, ReservationState, ReserveStockRequest,
            inventory_service_client::InventoryServiceClient,
        },
    },
    status::Failure,
};
use tonic::Code;
use tonic_types::StatusExt;

use crate::{Error, Result};

/// The clients of the services CreateOrder calls. Cheap to clone: handles on shared
/// channels.
#[derive(Debug, Clone)]
pub(crate) struct Downstream {
    catalog: CatalogServiceClient<MeshChannel>,
    inventory: InventoryServiceClient<MeshChannel>,
}

impl Downstream {
    pub(crate) fn new(
        catalog: CatalogServiceClient<MeshChannel>,
        inventory: InventoryServiceClient<MeshChannel>,
    ) -> Self {
        Self { catalog, inventory }
    }

    /// The catalog's price of each product now: one GetProduct per product, all at once
    /// (the catalog has no batch read; an order has at most 20 lines). The calls run in
    /// this task, not spawned, so each carries the call's deadline and trace.
    ///
    /// Products the catalog does not have are FAILED_PRECONDITION, naming every one of
    /// them; any other failure is the catalog's, under the shared rule.
    pub(crate) async fn prices(&self, product_ids: &[String]) -> Result<HashMap<String, Money>> {
        let lookups = product_ids.iter().map(|product_id| {
            let mut catalog = self.catalog.clone();
            async move {
                let reply = catalog
                    .get_product(GetProductRequest {
                        name: format!("products/{product_id}"),
                    })
                    .await;
                (product_id, reply)
            }
        });
        let mut prices = HashMap::new();
        let mut unknown = Vec::new();
        for (product_id, reply) in join_all(lookups).await {
            match reply {
                Ok(reply) => {
                    let price = reply.into_inner().product.and_then(|product| product.price);
                    match price {
                        Some(price) => {
                            prices.insert(product_id.clone(), price);
                        }
                        // The catalog requires a price on every product.
                        None => {
                            return Err(Failure::downstream(
                                "catalog",
                                tonic::Status::internal(format!("{product_id} has no price")),
                            )
                            .into());
                        }
                    }
                }
                Err(status) if status.code() == Code::NotFound => unknown.push(product_id.clone()),
                Err(status) => return Err(Failure::downstream("catalog", status).into()),
            }
        }
        if !unknown.is_empty() {
            return Err(Error::UnknownProducts(unknown));
        }
        Ok(prices)
    }

    /// Holds the stock of `lines` under the reservation id `order_id`, and says whether it
    /// is held: an earlier attempt of the same request made the reservation, and it may
    /// have expired since.
    ///
    /// - FAILED_PRECONDITION for missing stock is passed on with inventory's details (which
    ///   product, how many are left): it is the caller's business, and retrying will not
    ///   help until the stock changes.
    /// - ALREADY_EXISTS means the reservation id, and so this request_id, was used before
    ///   with other lines: the key was reused for another request.
    /// - Anything else is inventory's failure, under the shared rule.
    pub(crate) async fn reserve(
        &self,
        order_id: &str,
        request_id: &str,
        lines: &[(String, i64)],
    ) -> Result<bool> {
        let request = ReserveStockRequest {
            reservation_id: order_id.to_owned(),
            items: lines
                .iter()
                .map(|(product_id, quantity)| ReservationItem {
                    product_id: product_id.clone(),
                    quantity: *quantity,
                })
                .collect(),
        };
        match self.inventory.clone().reserve_stock(request).await {
            Ok(reply) => Ok(reply
                .into_inner()
                .reservation
                .is_some_and(|reservation| reservation.state() == ReservationState::Active)),
            Err(status) if is_stock_shortage(&status) => Err(Error::OutOfStock(status)),
            Err(status) if status.code() == Code::AlreadyExists => {
                Err(Failure::key_reused("request_id", request_id).into())
            }
            Err(status) => Err(Failure::downstream("inventory", status).into()),
        }
    }
}

/// Inventory's answer for stock it cannot hold: FAILED_PRECONDITION with a `STOCK`
/// violation. Any other FAILED_PRECONDITION is not the caller's to hear.
fn is_stock_shortage(status: &tonic::Status) -> bool {
    status.code() == Code::FailedPrecondition
        && status
            .get_details_precondition_failure()
            .is_some_and(|failure| {
                failure
                    .violations
                    .iter()
                    .any(|violation| violation.r#type == "STOCK")
            })
}
