//! The gRPC face of the catalog: check the request, read or write the store, join the
//! live stock from inventory, shape the reply.

use meshmart::status::Failure;
use std::collections::HashMap;

use meshmart::{
    client::MeshChannel,
    db::timestamp,
    proto::{
        catalog::{self as pb, catalog_service_server::CatalogService},
        google::r#type::Money,
        inventory::{BatchGetStockRequest, inventory_service_client::InventoryServiceClient},
    },
};
use tonic::{Request, Response, Status};

use crate::{
    Result,
    cache::ProductCache,
    metrics::Metrics,
    store::{Created, ProductRecord, Store},
    validate::{self, NAME_PREFIX, PAGE_TOKENS},
};

/// The catalog service.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
    cache: ProductCache,
    inventory: InventoryServiceClient<MeshChannel>,
    metrics: Metrics,
}

impl Catalog {
    pub(crate) fn new(
        store: Store,
        inventory: InventoryServiceClient<MeshChannel>,
        metrics: Metrics,
    ) -> Self {
        Self {
            cache: ProductCache::start(store.clone(), metrics.cache_lookups()),
            store,
            inventory,
            metrics,
        }
    }

    /// Sets the live stock of `products` (whose ids are `product_ids`, in the same order) with
    /// one batched inventory call, however many there are.
    async fn add_stock(
        &self,
        product_ids: Vec<String>,
        products: &mut [pb::Product],
    ) -> Result<()> {
        if products.is_empty() {
            return Ok(());
        }
        // The client is a cheap handle on one shared channel; cloning it is how tonic
        // lets concurrent calls share the connection.
        let reply = self
            .inventory
            .clone()
            .batch_get_stock(BatchGetStockRequest { product_ids })
            .await;
        let stocks = match reply {
            Ok(reply) => {
                self.metrics.stock_lookup(true);
                reply.into_inner().stocks
            }
            Err(status) => {
                self.metrics.stock_lookup(false);
                return Err(Failure::downstream("inventory", status).into());
            }
        };
        // Inventory answers in the order asked (its contract); anything else is matched by id.
        let in_order = stocks.len() == products.len()
            && stocks
                .iter()
                .zip(products.iter())
                .all(|(stock, product)| product_id(product) == stock.product_id);
        if in_order {
            for (product, stock) in products.iter_mut().zip(stocks) {
                product.available_quantity = stock.available_quantity;
            }
            return Ok(());
        }
        let available: HashMap<String, i64> = stocks
            .into_iter()
            .map(|stock| (stock.product_id, stock.available_quantity))
            .collect();
        for product in products {
            product.available_quantity = available
                .get(product_id(product))
                .copied()
                .unwrap_or_default();
        }
        Ok(())
    }

    /// After a write has committed: the product with its stock, or without it (and `true`)
    /// when the lookup fails. A committed write must never answer an error, or the caller
    /// would take it for a write that did not happen.
    async fn written_with_stock(&self, record: ProductRecord) -> (pb::Product, bool) {
        let product_ids = vec![record.product_id.clone()];
        let mut written = [product(record)];
        match self.add_stock(product_ids, &mut written).await {
            Ok(()) => (take_one(written), false),
            Err(error) => {
                let [written_product] = &written;
                tracing::warn!(product_id = product_id(written_product), %error, "written, but the stock lookup failed");
                (take_one(written), true)
            }
        }
    }
}

#[tonic::async_trait]
impl CatalogService for Catalog {
    #[tracing::instrument(level = "debug", skip_all, fields(name = %request.get_ref().name))]
    async fn get_product(
        &self,
        request: Request<pb::GetProductRequest>,
    ) -> Result<Response<pb::GetProductResponse>, Status> {
        let id = validate::product_name("name", &request.get_ref().name)?;
        let mut found = [self.cache.get(&id).await?];
        self.add_stock(vec![id], &mut found).await?;
        Ok(Response::new(pb::GetProductResponse {
            product: Some(take_one(found)),
        }))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(page_size = request.get_ref().page_size))]
    async fn list_products(
        &self,
        request: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        let (after, size) = validate::list(request.get_ref())?;
        let (records, more) = self.store.list(after.as_deref(), size).await?;
        let next_page_token = match records.last() {
            Some(last) if more => PAGE_TOKENS.encode(&last.product_id),
            _ => String::new(),
        };
        let product_ids = records.iter().map(|r| r.product_id.clone()).collect();
        let mut products: Vec<pb::Product> = records.into_iter().map(product).collect();
        self.add_stock(product_ids, &mut products).await?;
        Ok(Response::new(pb::ListProductsResponse {
            products,
            next_page_token,
        }))
    }

    #[tracing::instrument(skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn create_product(
        &self,
        request: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::CreateProductResponse>, Status> {
        let request = request.into_inner();
        let (product_id, fields) = validate::create(&request)?;
        let (Some(display_name), Some(description), Some(price)) =
            (fields.display_name, fields.description, fields.price)
        else {
            return Err(Status::invalid_argument("product is incomplete"));
        };
        let record = ProductRecord {
            product_id,
            display_name,
            description,
            price,
            create_time_ms: 0,
            update_time_ms: 0,
        };
        let request_id = Some(request.request_id.as_str()).filter(|id| !id.is_empty());
        let (created, outcome) = self
            .cache
            .write(self.store.create(request_id, &record))
            .await?;
        if outcome == Created::Now {
            self.metrics.products_created.inc();
        }
        let (product, stock_unknown) = self.written_with_stock(created).await;
        Ok(Response::new(pb::CreateProductResponse {
            product: Some(product),
            stock_unknown,
        }))
    }

    #[tracing::instrument(skip_all, fields(name = tracing::field::Empty))]
    async fn update_product(
        &self,
        request: Request<pb::UpdateProductRequest>,
    ) -> Result<Response<pb::UpdateProductResponse>, Status> {
        let (id, changes) = validate::update(request.get_ref())?;
        tracing::Span::current().record("name", format!("products/{id}"));
        let updated = self.cache.write(self.store.update(&id, &changes)).await?;
        let (product, stock_unknown) = self.written_with_stock(updated).await;
        Ok(Response::new(pb::UpdateProductResponse {
            product: Some(product),
            stock_unknown,
        }))
    }
}

/// A product as the API shows it, before its stock is added.
pub(crate) fn product(record: ProductRecord) -> pb::Product {
    pb::Product {
        name: format!("{NAME_PREFIX}{}", record.product_id),
        display_name: record.display_name,
        description: record.description,
        price: Some(Money {
            currency_code: record.price.currency_code,
            units: record.price.units,
            nanos: record.price.nanos,
        }),
        available_quantity: 0,
        create_time: Some(timestamp(record.create_time_ms)),
        update_time: Some(timestamp(record.update_time_ms)),
    }
}

/// The id in a product's name (which this service wrote, so it has the prefix).
fn product_id(product: &pb::Product) -> &str {
    product
        .name
        .strip_prefix(NAME_PREFIX)
        .unwrap_or(&product.name)
}

fn take_one([product]: [pb::Product; 1]) -> pb::Product {
    product
}
