//! Code generated from `proto/` by `build.rs`, in modules named after the proto packages.

#![allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]

/// The encoded descriptors of every meshmart contract, served by server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/meshmart_descriptor.bin"));

pub mod google {
    pub mod r#type {
        tonic::include_proto!("google.r#type");
    }
}

pub mod meshmart {
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("meshmart.catalog.v1");
        }
    }
    pub mod inventory {
        pub mod v1 {
            tonic::include_proto!("meshmart.inventory.v1");
        }
    }
    pub mod orders {
        pub mod v1 {
            tonic::include_proto!("meshmart.orders.v1");
        }
    }
    pub mod payments {
        pub mod v1 {
            tonic::include_proto!("meshmart.payments.v1");
        }
    }
    pub mod fulfillment {
        pub mod v1 {
            tonic::include_proto!("meshmart.fulfillment.v1");
        }
    }
    pub mod notifications {
        pub mod v1 {
            tonic::include_proto!("meshmart.notifications.v1");
        }
    }
    pub mod orchestrator {
        pub mod v1 {
            tonic::include_proto!("meshmart.orchestrator.v1");
        }
    }
    /// The order flow's events, as they travel on the broker.
    pub mod events {
        pub mod v1 {
            tonic::include_proto!("meshmart.events.v1");
        }
    }
    /// The benchmarks' baseline: a service that does no work (see `bench/echo`).
    pub mod echo {
        pub mod v1 {
            tonic::include_proto!("meshmart.echo.v1");
        }
    }
}

pub use meshmart::{
    catalog::v1 as catalog, echo::v1 as echo, events::v1 as events, fulfillment::v1 as fulfillment,
    inventory::v1 as inventory, notifications::v1 as notifications,
    orchestrator::v1 as orchestrator, orders::v1 as orders, payments::v1 as payments,
};
