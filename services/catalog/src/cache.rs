//! Product details kept in memory, so that a GetProduct reads only its stock (from
//! inventory), and what keeps them true with any number of replicas writing.
//!
//! Every change to `products` raises `products_version` in the change's own transaction
//! (the triggers of `migrations-sqlite/` and `migrations-postgres/`, so whichever release
//! or tool made it). Each replica reads that number every [`POLL`] and lets its cache go
//! when the number moved. A cache answers only within [`FRESH_FOR`] of the start of its
//! last such read, and a write through this release waits [`FRESH_FOR`] after its commit
//! before it answers. So by the time a change is acknowledged, every replica's cache has
//! either read the new number (and let the old details go) or stopped answering: a product
//! change acknowledged to its caller is visible to every GetProduct that starts after it,
//! on every replica, as stock is. What it costs is on the rare path: a write's latency.
//!
//! A fill keeps what it read only if no invalidation came while it was reading (the
//! epoch), so a read that began before a change and ended after the cache let go cannot
//! put the old details back. Idle for [`IDLE_AFTER`], the watcher stops reading; the next
//! lookup reads the database and wakes it.

use std::{
    collections::HashMap,
    sync::{
        Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use prometheus_client::metrics::counter::Counter;
use tokio::{sync::Notify, time::Instant};

use meshmart::proto::catalog::Product;

use crate::{Result, service::product, store::Store};

/// How often a replica reads `products_version` while lookups come in.
const POLL: Duration = Duration::from_millis(25);

/// How long after the start of its last good read of the version a cache may answer, and
/// so how long a write waits after its commit. Four polls: a watcher held up by a busy
/// runtime for a tick or two costs hits (the lookups read the database), never staleness.
const FRESH_FOR: Duration = Duration::from_millis(100);

/// Without lookups for this long, the watcher stops reading the version.
const IDLE_AFTER: Duration = Duration::from_secs(2);

/// How often an idle watcher checks whether its cache is gone (it holds only a weak
/// reference, so dropping the catalog ends it).
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// More products than this and the cache starts again from empty: a bound on memory
/// that costs nothing on the demo's few products.
const MAX_PRODUCTS: usize = 10_000;

/// What a lookup found: `hit` (answered from memory), `miss` (read, then kept), or
/// `unsure` (read, because the cache had not heard from the database within FRESH_FOR).
#[derive(Debug, Clone)]
pub(crate) struct Lookups {
    pub(crate) hit: Counter,
    pub(crate) miss: Counter,
    pub(crate) unsure: Counter,
}

#[derive(Debug, Clone)]
pub(crate) struct ProductCache {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    store: Store,
    state: RwLock<State>,
    /// Set by every lookup, taken by the watcher: whether anyone still reads.
    looked_up: AtomicBool,
    /// Wakes an idle watcher.
    wake: Notify,
    lookups: Lookups,
}

#[derive(Debug, Default)]
struct State {
    /// Raised whenever the cache lets products go.
    epoch: u64,
    /// The version the cached products were read under.
    version: Option<i64>,
    /// When the last good read of the version started.
    heard_at: Option<Instant>,
    /// Shaped as the API shows them (stock aside), so that a hit is one clone.
    products: HashMap<String, Product>,
}

impl State {
    fn fresh(&self) -> bool {
        self.heard_at
            .is_some_and(|heard_at| heard_at.elapsed() < FRESH_FOR)
    }

    fn forget(&mut self) {
        self.epoch += 1;
        self.products.clear();
    }
}

impl ProductCache {
    /// A cache in front of `store`, and its watcher, which ends when the last clone is gone.
    pub(crate) fn start(store: Store, lookups: Lookups) -> Self {
        let shared = Arc::new(Shared {
            store,
            state: RwLock::new(State::default()),
            looked_up: AtomicBool::new(true),
            wake: Notify::new(),
            lookups,
        });
        tokio::spawn(watch(Arc::downgrade(&shared)));
        Self { shared }
    }

    /// The product, from memory when the cache may answer, else from the store.
    pub(crate) async fn get(&self, product_id: &str) -> Result<Product> {
        let shared = &self.shared;
        if !shared.looked_up.load(Ordering::Relaxed) {
            shared.looked_up.store(true, Ordering::Relaxed);
        }
        let epoch = {
            let state = shared.read();
            if state.fresh() {
                if let Some(product) = state.products.get(product_id) {
                    shared.lookups.hit.inc();
                    return Ok(product.clone());
                }
                shared.lookups.miss.inc();
            } else {
                shared.lookups.unsure.inc();
                shared.wake.notify_one();
            }
            state.epoch
        };
        let product = product(shared.store.get(product_id).await?);
        let mut state = shared.write();
        if state.epoch == epoch {
            if state.products.len() >= MAX_PRODUCTS {
                state.forget();
            }
            state
                .products
                .insert(product_id.to_owned(), product.clone());
        }
        Ok(product)
    }

    /// Runs a write, lets this replica's cache go, and waits [`FRESH_FOR`] so that every
    /// other replica's has heard of it too before the caller does. Also when the write
    /// failed: it may have committed before it failed.
    pub(crate) async fn write<T>(&self, write: impl Future<Output = Result<T>>) -> Result<T> {
        let outcome = write.await;
        self.shared.write().forget();
        tokio::time::sleep(FRESH_FOR).await;
        outcome
    }
}

impl Shared {
    // Held for a lookup or an insert, never across an await: a std lock is right here.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn watch(shared: Weak<Shared>) {
    let mut last_lookup = Instant::now();
    let mut failing = false;
    while let Some(strong) = shared.upgrade() {
        if strong.looked_up.swap(false, Ordering::Relaxed) {
            last_lookup = Instant::now();
        }
        if last_lookup.elapsed() >= IDLE_AFTER {
            // What the cache holds stays: the first read after waking compares versions.
            let _woken = tokio::time::timeout(IDLE_CHECK, strong.wake.notified()).await;
            continue;
        }
        let started = Instant::now();
        match strong.store.products_version().await {
            Ok(version) => {
                let mut state = strong.write();
                if state.version != Some(version) {
                    state.forget();
                    state.version = Some(version);
                }
                state.heard_at = Some(started);
                if failing {
                    tracing::info!("product cache reads the version again");
                    failing = false;
                }
            }
            Err(error) => {
                // The cache stops answering within FRESH_FOR; lookups read the database.
                if !failing {
                    tracing::warn!(%error, "product cache cannot read the version; lookups read the database");
                    failing = true;
                }
            }
        }
        drop(strong);
        tokio::time::sleep(POLL).await;
    }
}
