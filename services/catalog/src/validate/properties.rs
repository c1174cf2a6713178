//! Properties of the request checks on arbitrary requests: any text (any characters, empty,
//! megabytes), any numbers, masks of any length. Each check either accepts, with a result
//! the service can use, or answers INVALID_ARGUMENT with a bounded BadRequest that names a
//! field; none panics.

use meshmart::{
    page_token::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE},
    proto::{
        catalog::{
            CreateProductRequest, GetProductRequest, ListProductsRequest, Product,
            UpdateProductRequest,
        },
        google::r#type::Money,
    },
    validation::{check_bad_request, is_resource_id},
};
use proptest::{collection::vec, option, prelude::*};
use prost_types::{FieldMask, Timestamp};
use tonic::Status;

use super::*;

/// Any text a client could send, weighted towards what the checks look at: any
/// characters; almost-ids; one character many times over, past every limit; blanks.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-z0-9-]{0,70}",
        1 => (any::<char>(), 0..9000usize).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => "[ \t\n\u{a0}\u{3000}]{0,5}",
    ]
}

fn id() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z0-9][a-z0-9-]{0,62}", 1 => text()]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![3 => id().prop_map(|id| format!("products/{id}")), 1 => text()]
}

fn int64() -> impl Strategy<Value = i64> {
    prop_oneof![
        any::<i64>(),
        -5..2_000_000_000i64,
        Just(i64::MIN),
        Just(i64::MAX)
    ]
}

fn money() -> impl Strategy<Value = Money> {
    let currency = prop_oneof![3 => "[A-Z]{3}", 1 => text()];
    let nanos = prop_oneof![any::<i32>(), -1..1_000_000_001i32];
    (currency, int64(), nanos).prop_map(|(currency_code, units, nanos)| Money {
        currency_code,
        units,
        nanos,
    })
}

fn timestamp() -> impl Strategy<Value = Option<Timestamp>> {
    option::of(
        (any::<i64>(), any::<i32>()).prop_map(|(seconds, nanos)| Timestamp { seconds, nanos }),
    )
}

fn product() -> impl Strategy<Value = Product> {
    (
        name(),
        text(),
        text(),
        option::weighted(0.8, money()),
        int64(),
        timestamp(),
        timestamp(),
    )
        .prop_map(
            |(
                name,
                display_name,
                description,
                price,
                available_quantity,
                create_time,
                update_time,
            )| {
                Product {
                    name,
                    display_name,
                    description,
                    price,
                    available_quantity,
                    create_time,
                    update_time,
                }
            },
        )
}

fn mask() -> impl Strategy<Value = Option<FieldMask>> {
    let path = prop_oneof![
        3 => prop_oneof![
            Just("display_name"),
            Just("description"),
            Just("price"),
            Just("*"),
            Just("name"),
            Just("create_time"),
        ]
        .prop_map(str::to_owned),
        1 => text(),
    ];
    let paths = prop_oneof![
        4 => vec(path, 0..6),
        1 => (0..100_000usize).prop_map(|n| vec!["price".to_owned(); n]),
    ];
    option::weighted(0.8, paths.prop_map(|paths| FieldMask { paths }))
}

fn page_token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        id().prop_map(|id| PAGE_TOKENS.encode(&id)),
        text(),
    ]
}

/// The answer of a check that refused: INVALID_ARGUMENT, a field named, within bounds.
fn refused(status: &Status) -> Result<(), TestCaseError> {
    check_bad_request(status).map_err(TestCaseError::fail)
}

proptest! {
    #[test]
    fn get_names_a_product_or_is_refused(request in name().prop_map(|name| GetProductRequest { name })) {
        match product_name("name", &request.name) {
            Ok(id) => {
                prop_assert!(is_resource_id(&id));
                prop_assert_eq!(format!("products/{id}"), request.name);
            }
            Err(status) => refused(&status)?,
        }
    }

    /// AIP-158: a negative size is refused, 0 is the default, above the maximum is the
    /// maximum; a token is one we made or is refused.
    #[test]
    fn list_clamps_the_page_size(
        page_size in prop_oneof![any::<i32>(), -3..150i32],
        page_token in page_token(),
    ) {
        let request = ListProductsRequest { page_size, page_token };
        let token_ok = request.page_token.is_empty()
            || PAGE_TOKENS.decode(&request.page_token).is_some();
        match list(&request) {
            Ok((after, size)) => {
                prop_assert!(page_size >= 0 && token_ok);
                let expected = match page_size {
                    0 => DEFAULT_PAGE_SIZE,
                    n => usize::try_from(n).unwrap_or(0).min(MAX_PAGE_SIZE),
                };
                prop_assert_eq!(size, expected);
                prop_assert!(after.as_deref().is_none_or(is_resource_id));
            }
            Err(status) => {
                prop_assert!(page_size < 0 || !token_ok);
                refused(&status)?;
            }
        }
    }

    #[test]
    fn create_accepts_only_a_whole_product(
        product_id in id(),
        product in option::weighted(0.9, product()),
        request_id in prop_oneof![Just(String::new()), "[a-zA-Z0-9._:-]{1,130}", text()],
    ) {
        let request = CreateProductRequest { product_id, product, request_id };
        match create(&request) {
            Ok((id, fields)) => {
                prop_assert!(is_resource_id(&id));
                let display_name = fields.display_name.unwrap_or_default();
                prop_assert!((1..=MAX_DISPLAY_NAME).contains(&display_name.chars().count()));
                prop_assert!(fields.description.unwrap_or_default().chars().count() <= MAX_DESCRIPTION);
                let price = fields.price;
                prop_assert!(price.is_some_and(|p| p.units >= 0 && p.units <= 1_000_000_000 && p.currency_code.len() == 3));
            }
            Err(status) => refused(&status)?,
        }
    }

    #[test]
    fn update_accepts_only_mutable_fields(
        product in option::weighted(0.95, product()),
        update_mask in mask(),
    ) {
        let request = UpdateProductRequest { product, update_mask };
        match update(&request) {
            Ok((id, changes)) => {
                prop_assert!(is_resource_id(&id));
                prop_assert!(changes.display_name.is_some() || changes.description.is_some() || changes.price.is_some());
                prop_assert!(request.update_mask.is_none_or(|m| m.paths.len() <= MAX_MASK_PATHS));
            }
            Err(status) => refused(&status)?,
        }
    }
}

#[test]
fn page_sizes_follow_aip_158() {
    let size = |page_size| {
        list(&ListProductsRequest {
            page_size,
            page_token: String::new(),
        })
        .map(|(_, size)| size)
    };
    assert_eq!(size(0).unwrap(), DEFAULT_PAGE_SIZE);
    assert_eq!(size(1).unwrap(), 1);
    assert_eq!(size(100).unwrap(), 100);
    assert_eq!(size(101).unwrap(), MAX_PAGE_SIZE);
    assert_eq!(size(i32::MAX).unwrap(), MAX_PAGE_SIZE);
    for negative in [-1, i32::MIN] {
        let status = size(negative).unwrap_err();
        assert_eq!(
            meshmart::testing::violated_fields::<()>(Err(status)),
            ["page_size"]
        );
    }
}

#[test]
fn an_over_long_page_token_is_refused() {
    let status = list(&ListProductsRequest {
        page_size: 0,
        page_token: "A".repeat(PAGE_TOKENS.max_len() + 1),
    })
    .unwrap_err();
    assert_eq!(
        meshmart::testing::violated_fields::<()>(Err(status)),
        ["page_token"]
    );
}

#[test]
fn a_mask_of_a_million_paths_is_one_violation() {
    let request = UpdateProductRequest {
        product: Some(Product {
            name: "products/cup".into(),
            ..Product::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["nope".to_owned(); 1_000_000],
        }),
    };
    let status = update(&request).unwrap_err();
    check_bad_request(&status).unwrap();
    assert_eq!(
        meshmart::testing::violated_fields::<()>(Err(status)),
        ["update_mask"]
    );
}

#[test]
fn unknown_paths_are_quoted_short_and_escaped() {
    let request = UpdateProductRequest {
        product: Some(Product {
            name: "products/cup".into(),
            ..Product::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec![format!("\n{}", "x".repeat(1 << 20))],
        }),
    };
    let status = update(&request).unwrap_err();
    check_bad_request(&status).unwrap();
    let violations = meshmart::validation::field_violations(&status);
    assert_eq!(violations.len(), 1);
    let (field, description) = &violations[0];
    assert_eq!(field, "update_mask");
    assert!(description.starts_with("\"\\nxxx"), "{description}");
    assert!(
        description.ends_with("…\" is not a field of Product"),
        "{description}"
    );
}

#[test]
fn a_huge_display_name_is_refused_without_counting() {
    let request = CreateProductRequest {
        product_id: "cup".into(),
        product: Some(Product {
            display_name: "é".repeat(4 << 20),
            description: "x".repeat(8001),
            price: Some(Money {
                currency_code: "EUR".into(),
                units: 1,
                nanos: 0,
            }),
            ..Product::default()
        }),
        request_id: String::new(),
    };
    let status = create(&request).unwrap_err();
    assert_eq!(
        meshmart::testing::violated_fields::<()>(Err(status)),
        ["product.display_name", "product.description"]
    );
}
