//! What the load generator calls: scenarios, the services they call, and a weighted mix.
//!
//! Adding a scenario takes a variant of [`Scenario`], its name and targets below, and its
//! call in [`crate::client`]; a new service to call takes a variant of [`Target`] as well,
//! and its `--target-<name>` flag in [`crate::options`] (the compiler points there).
//! Everything else (mixes, health waits, statistics, reports) follows from these two lists.

use std::fmt;

use meshmart::proto::{
    catalog::catalog_service_server::SERVICE_NAME as CATALOG_SERVICE,
    echo::echo_service_server::SERVICE_NAME as ECHO_SERVICE,
    inventory::inventory_service_server::SERVICE_NAME as INVENTORY_SERVICE,
    orders::order_service_server::SERVICE_NAME as ORDERS_SERVICE,
};

/// One kind of call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// `CatalogService/GetProduct` of a random product: one database read in catalog and
    /// one `BatchGetStock` call to inventory (the fan-out path).
    GetProduct,
    /// `CatalogService/ListProducts`, first page: one database read and one batched
    /// stock call for the whole page.
    ListProducts,
    /// `EchoService/Echo`: the baseline, a call that does no work.
    Echo,
    /// `OrderService/CreateOrder` of one demo product, paid with a card that is always
    /// approved: a catalog read, a stock reservation and the order's commit with its event.
    /// The call's latency is CreateOrder's; the flow it starts (payment, shipment, the
    /// saga) is timed afterwards from each order's history ([`crate::flow`]).
    PlaceOrder,
}

impl Scenario {
    /// Every scenario, in the order reports list them.
    pub const ALL: [Self; 4] = [
        Self::GetProduct,
        Self::ListProducts,
        Self::Echo,
        Self::PlaceOrder,
    ];

    /// The name used in `--mix` and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetProduct => "get-product",
            Self::ListProducts => "list-products",
            Self::Echo => "echo",
            Self::PlaceOrder => "place-order",
        }
    }

    /// The services this scenario calls: the one its calls go to first. `place-order` also
    /// needs inventory, where the run restocks before it starts.
    pub fn targets(self) -> &'static [Target] {
        match self {
            Self::GetProduct | Self::ListProducts => &[Target::Catalog],
            Self::Echo => &[Target::Echo],
            Self::PlaceOrder => &[Target::Orders, Target::Inventory],
        }
    }

    /// Position in [`Scenario::ALL`], for per-scenario tables without a map lookup per call.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_name(name: &str) -> Result<Self, String> {
        if let Some(scenario) = Self::ALL.into_iter().find(|s| s.name() == name) {
            return Ok(scenario);
        }
        let known: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
        Err(format!(
            "unknown scenario {name:?}; known: {}",
            known.join(", ")
        ))
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A service the load generator calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    Catalog,
    Echo,
    Orders,
    Inventory,
}

impl Target {
    pub const ALL: [Self; 4] = [Self::Catalog, Self::Echo, Self::Orders, Self::Inventory];

    /// The short name: the flag is `--target-<name>`, the variable `LOADGEN_TARGET_<NAME>`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Echo => "echo",
            Self::Orders => "orders",
            Self::Inventory => "inventory",
        }
    }

    /// Where `meshctl up` (catalog, inventory, orders) and the echo binary listen by default.
    pub fn default_url(self) -> &'static str {
        match self {
            Self::Catalog => "http://127.0.0.1:50051",
            Self::Echo => "http://127.0.0.1:50050",
            Self::Orders => "http://127.0.0.1:50053",
            Self::Inventory => "http://127.0.0.1:50052",
        }
    }

    /// The gRPC service whose health status must be SERVING before load starts.
    pub fn health_service(self) -> &'static str {
        match self {
            Self::Catalog => CATALOG_SERVICE,
            Self::Echo => ECHO_SERVICE,
            Self::Orders => ORDERS_SERVICE,
            Self::Inventory => INVENTORY_SERVICE,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Scenarios with weights: each call picks a scenario with probability weight / total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(Scenario, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `get-product=3,list-products=1`; a bare name has weight 1.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut entries: Vec<(Scenario, u32)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = match part.split_once('=') {
                Some((name, weight)) => {
                    let weight = weight
                        .trim()
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=1_000_000).contains(w))
                        .ok_or_else(|| {
                            format!("weight of {name:?} must be a whole number from 1 to 1000000")
                        })?;
                    (name.trim(), weight)
                }
                None => (part, 1),
            };
            let scenario = Scenario::from_name(name)?;
            if entries.iter().any(|(s, _)| *s == scenario) {
                return Err(format!("scenario {name:?} is named twice"));
            }
            entries.push((scenario, weight));
        }
        if entries.is_empty() {
            return Err("the mix names no scenario".to_owned());
        }
        let total = entries.iter().map(|(_, w)| *w).sum();
        Ok(Self { entries, total })
    }

    /// Picks a scenario at random, by weight.
    pub fn pick(&self, rng: &mut Rng) -> Scenario {
        let mut left = rng.below(u64::from(self.total));
        for (scenario, weight) in &self.entries {
            let weight = u64::from(*weight);
            if left < weight {
                return *scenario;
            }
            left -= weight;
        }
        // Unreachable while `total` is the sum of the weights; the first entry is a safe answer.
        self.entries[0].0
    }

    pub fn scenarios(&self) -> impl Iterator<Item = Scenario> + '_ {
        self.entries.iter().map(|(s, _)| *s)
    }

    /// The services this mix calls, each once.
    pub fn targets(&self) -> Vec<Target> {
        let mut targets: Vec<Target> = self
            .scenarios()
            .flat_map(|s| s.targets().iter().copied())
            .collect();
        targets.sort();
        targets.dedup();
        targets
    }

    pub fn uses(&self, target: Target) -> bool {
        self.targets().contains(&target)
    }

    pub fn has(&self, scenario: Scenario) -> bool {
        self.scenarios().any(|s| s == scenario)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (scenario, weight)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{scenario}={weight}")?;
        }
        Ok(())
    }
}

/// SplitMix64: fast, seedable, and good enough to spread calls over scenarios and products.
/// Each caller owns one, so picking needs no lock and a run can be repeated from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0). The modulo bias is below 2^-40 for the small
    /// `n` used here, far under anything a benchmark could notice.
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mixes_parse_and_reject() {
        let mix = Mix::parse("get-product=3, list-products=1").unwrap();
        assert_eq!(mix.to_string(), "get-product=3,list-products=1");
        assert_eq!(mix.targets(), vec![Target::Catalog]);
        assert_eq!(Mix::parse("echo").unwrap().to_string(), "echo=1");
        assert!(Mix::parse("").is_err());
        assert!(Mix::parse("echo=0").is_err());
        assert!(Mix::parse("echo,echo=2").is_err());
        assert!(Mix::parse("get-product=x").is_err());
        let unknown = Mix::parse("checkout").unwrap_err();
        assert!(unknown.contains("place-order"), "{unknown}");
    }

    #[test]
    fn place_order_mixes_call_orders_and_inventory() {
        let mix = Mix::parse("place-order").unwrap();
        assert_eq!(mix.to_string(), "place-order=1");
        assert!(mix.has(Scenario::PlaceOrder));
        assert!(!mix.has(Scenario::Echo));
        // Inventory for the restock before the run, waited for like the orders service.
        assert_eq!(mix.targets(), vec![Target::Orders, Target::Inventory]);
        let mixed = Mix::parse("get-product=2,place-order=1").unwrap();
        assert_eq!(
            mixed.targets(),
            vec![Target::Catalog, Target::Orders, Target::Inventory]
        );
        assert!(mixed.uses(Target::Inventory));
        assert!(Mix::parse("place-order=1,place-order=2").is_err());
    }

    #[test]
    fn picks_follow_the_weights() {
        let mix = Mix::parse("get-product=3,echo=1").unwrap();
        let mut rng = Rng::new(7);
        let mut counts = [0u32; Scenario::ALL.len()];
        for _ in 0..40_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert_eq!(counts[Scenario::ListProducts.index()], 0);
        // 30000 expected; a fair generator lands well within 2%.
        let get = counts[Scenario::GetProduct.index()];
        assert!((29_400..=30_600).contains(&get), "{get}");
        assert_eq!(get + counts[Scenario::Echo.index()], 40_000);
    }

    #[test]
    fn names_round_trip() {
        for scenario in Scenario::ALL {
            assert_eq!(Scenario::from_name(scenario.name()).unwrap(), scenario);
            assert_eq!(Scenario::ALL[scenario.index()], scenario);
        }
        for target in Target::ALL {
            assert_eq!(Target::ALL[target.index()], target);
        }
    }
}
