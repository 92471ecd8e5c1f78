//! The demo profile's data (docs/api.md, "Demo data").

use stockade_application::{AppError, Stockade};
use stockade_domain::{Discount, NewCoupon, NewProduct};

/// The demo's admin user id; users 1..=500 are its shoppers (any positive id works).
pub const DEMO_ADMIN: i64 = 1_000;

const PRODUCTS: [(&str, i64, i64, i64); 10] = [
    ("Stockade hoodie", 10_000, 1_000, 5),
    ("Canvas tote", 5_000, 1_000, 10),
    ("Enamel mug", 8_000, 500, 10),
    ("Notebook set", 12_000, 500, 10),
    ("Water bottle", 15_000, 500, 5),
    ("Desk lamp", 35_000, 200, 3),
    ("Wireless mouse", 25_000, 300, 3),
    ("Mechanical keyboard", 89_000, 100, 2),
    ("Noise-cancelling headphones", 199_000, 50, 1),
    ("Limited sneaker", 149_000, 100, 1),
];

/// Creates products 1..=10 and coupons 1..=3 on an empty store.
///
/// # Errors
/// When the store refuses (it is not empty, or it is unavailable).
pub async fn demo(app: &Stockade) -> Result<(), AppError> {
    for (name, price, stock, max) in PRODUCTS {
        app.create_product(NewProduct::new(name, price, stock, max)?)
            .await?;
    }
    let coupons = [
        (
            "FLASH100",
            "CART",
            Discount::new("FIXED", 5_000, None)?,
            100,
            "FLASH",
        ),
        (
            "WELCOME10",
            "CART",
            Discount::new("PERCENT", 10, Some(20_000))?,
            1_000,
            "LOCKED",
        ),
        (
            "ITEM3000",
            "CART_ITEM",
            Discount::new("FIXED", 3_000, None)?,
            1_000,
            "LOCKED",
        ),
    ];
    for (name, kind, discount, quantity, mode) in coupons {
        app.create_coupon(NewCoupon::new(
            name, kind, discount, 0, quantity, mode, None, None,
        )?)
        .await?;
    }
    Ok(())
}
