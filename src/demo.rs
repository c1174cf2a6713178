//! The demo catalogue that an empty shop starts with, so the first grpcurl call shows
//! something. Catalog seeds the products and inventory seeds their stock, from this one list.

/// One demo product and its starting stock.
#[derive(Debug, Clone, Copy)]
pub struct DemoProduct {
    pub id: &'static str,
    pub display_name: &'static str,
    pub description: &'static str,
    pub currency_code: &'static str,
    pub price_units: i64,
    pub price_nanos: i32,
    pub stock: i64,
}

const fn product(
    id: &'static str,
    display_name: &'static str,
    description: &'static str,
    price_units: i64,
    price_nanos: i32,
    stock: i64,
) -> DemoProduct {
    DemoProduct {
        id,
        display_name,
        description,
        currency_code: "EUR",
        price_units,
        price_nanos,
        stock,
    }
}

pub const PRODUCTS: &[DemoProduct] = &[
    product(
        "burr-grinder",
        "Burr grinder",
        "Conical steel burrs, 40 grind settings.",
        129,
        0,
        8,
    ),
    product(
        "ceramic-dripper",
        "Ceramic dripper",
        "Single-cup pour-over dripper, size 02.",
        24,
        500_000_000,
        35,
    ),
    product(
        "coffee-scale",
        "Coffee scale",
        "0.1 g resolution with a built-in timer.",
        49,
        900_000_000,
        12,
    ),
    product(
        "espresso-cup",
        "Espresso cup",
        "Double-walled glass, 80 ml, set of two.",
        18,
        0,
        60,
    ),
    product(
        "french-press",
        "French press",
        "One litre, stainless steel, double filter.",
        39,
        0,
        20,
    ),
    product(
        "milk-frother",
        "Milk frother",
        "Hand pump frother for hot or cold milk.",
        29,
        500_000_000,
        0,
    ),
    product(
        "pour-over-kettle",
        "Pour-over kettle",
        "Gooseneck kettle, 900 ml, for steady pours.",
        59,
        0,
        15,
    ),
    product(
        "travel-mug",
        "Travel mug",
        "Leak-proof, keeps coffee hot for six hours.",
        22,
        0,
        40,
    ),
];
