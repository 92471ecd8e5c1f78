//! Products and their stock.

use crate::{DomainError, Money, ProductId, Quantity};

/// The most units one product may hold in stock.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// A product on sale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: ProductId,
    pub name: String,
    pub price: Money,
    /// Units available now. Never negative: stores deduct with a guarded conditional update.
    pub stock: u32,
    /// The most units of this product one order (and one cart line) may hold.
    pub max_per_order: u32,
    /// The most units of this product one customer's live orders (not CANCELLED, EXPIRED or
    /// PAYMENT_FAILED) may hold together; `None` for no limit.
    pub max_per_customer: Option<u32>,
}

/// What an admin gives to create a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub price: Money,
    pub stock: u32,
    pub max_per_order: u32,
    pub max_per_customer: Option<u32>,
}

impl NewProduct {
    /// # Errors
    /// `INVALID_INPUT` naming the field at fault.
    pub fn new(
        name: &str,
        price: i64,
        stock: i64,
        max_per_order: i64,
    ) -> Result<NewProduct, DomainError> {
        Ok(NewProduct {
            name: product_name(name)?,
            price: product_price(price)?,
            stock: stock_level(stock)?,
            max_per_order: order_limit(max_per_order)?,
            max_per_customer: None,
        })
    }

    /// The product with a per-customer limit (`None`: no limit).
    ///
    /// # Errors
    /// `INVALID_INPUT` naming `maxPerCustomer` outside `1..=MAX_STOCK`.
    pub fn limit_per_customer(mut self, max: Option<i64>) -> Result<NewProduct, DomainError> {
        self.max_per_customer = max.map(customer_limit).transpose()?;
        Ok(self)
    }
}

/// What an admin changes of a product (`PATCH`): each field `None` is left as it is. Stock is
/// not here: it has its own operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProductChanges {
    pub name: Option<String>,
    pub price: Option<Money>,
    pub max_per_order: Option<u32>,
    /// `Some(None)` removes the limit.
    pub max_per_customer: Option<Option<u32>>,
}

impl ProductChanges {
    /// Validates each given field as [`NewProduct::new`] does.
    ///
    /// # Errors
    /// `INVALID_INPUT` naming the field at fault, or naming them all when none is given.
    pub fn new(
        name: Option<&str>,
        price: Option<i64>,
        max_per_order: Option<i64>,
        max_per_customer: Option<Option<i64>>,
    ) -> Result<ProductChanges, DomainError> {
        if name.is_none()
            && price.is_none()
            && max_per_order.is_none()
            && max_per_customer.is_none()
        {
            return Err(DomainError::invalid(
                "body",
                "give at least one of name, price, maxPerOrder, maxPerCustomer",
            ));
        }
        Ok(ProductChanges {
            name: name.map(product_name).transpose()?,
            price: price.map(product_price).transpose()?,
            max_per_order: max_per_order.map(order_limit).transpose()?,
            max_per_customer: max_per_customer
                .map(|m| m.map(customer_limit).transpose())
                .transpose()?,
        })
    }

    /// Whether the change can alter what an order of the product costs or may hold.
    pub fn touches_orders(&self) -> bool {
        self.price.is_some() || self.max_per_order.is_some() || self.max_per_customer.is_some()
    }
}

fn product_name(name: &str) -> Result<String, DomainError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(DomainError::invalid("name", "must be 1 to 200 characters"));
    }
    Ok(name.to_owned())
}

fn product_price(price: i64) -> Result<Money, DomainError> {
    let price = Money::new(price, "price")?;
    if price == Money::ZERO {
        return Err(DomainError::invalid("price", "must be positive"));
    }
    Ok(price)
}

fn order_limit(max: i64) -> Result<u32, DomainError> {
    u32::try_from(max)
        .ok()
        .filter(|m| (1..=Quantity::MAX).contains(m))
        .ok_or_else(|| {
            DomainError::invalid("maxPerOrder", format!("must be 1 to {}", Quantity::MAX))
        })
}

fn customer_limit(max: i64) -> Result<u32, DomainError> {
    if !(1..=MAX_STOCK).contains(&max) {
        return Err(DomainError::invalid(
            "maxPerCustomer",
            format!("must be 1 to {MAX_STOCK}, or null for no limit"),
        ));
    }
    // In range, fits u32.
    Ok(max as u32)
}

/// Validates a stock level set by an admin.
///
/// # Errors
/// `INVALID_INPUT` outside `0..=MAX_STOCK`.
pub fn stock_level(stock: i64) -> Result<u32, DomainError> {
    if !(0..=MAX_STOCK).contains(&stock) {
        return Err(DomainError::invalid(
            "stock",
            format!("must be 0 to {MAX_STOCK}"),
        ));
    }
    // In range, fits u32.
    Ok(stock as u32)
}

impl Product {
    /// Checks that `quantity` may be ordered in one go (per-order limit only; stock is checked
    /// by the store's conditional deduction).
    ///
    /// # Errors
    /// `EXCEEDED_LIMITED_QUANTITY` above `max_per_order`.
    pub fn check_order_quantity(&self, quantity: Quantity) -> Result<(), DomainError> {
        if quantity.get() > self.max_per_order {
            return Err(DomainError::ExceededLimitedQuantity {
                product: self.id.get(),
                max: self.max_per_order,
                requested: quantity.get(),
            });
        }
        Ok(())
    }

    /// Checks a per-order limit and the stock visible now (advisory: used for carts).
    ///
    /// # Errors
    /// `EXCEEDED_LIMITED_QUANTITY` or `INSUFFICIENT_STOCK`.
    pub fn check_available(&self, quantity: Quantity) -> Result<(), DomainError> {
        self.check_order_quantity(quantity)?;
        if quantity.get() > self.stock {
            return Err(DomainError::InsufficientStock {
                product: self.id.get(),
                requested: quantity.get(),
                available: self.stock,
            });
        }
        Ok(())
    }

    /// Removes `quantity` from stock.
    ///
    /// # Errors
    /// `INSUFFICIENT_STOCK` when fewer units are left; stock is unchanged then.
    pub fn deduct(&mut self, quantity: Quantity) -> Result<(), DomainError> {
        self.stock =
            self.stock
                .checked_sub(quantity.get())
                .ok_or(DomainError::InsufficientStock {
                    product: self.id.get(),
                    requested: quantity.get(),
                    available: self.stock,
                })?;
        Ok(())
    }

    /// Checks that a customer whose live orders hold `held` units of this product may order
    /// `quantity` more.
    ///
    /// # Errors
    /// `PURCHASE_LIMIT_REACHED` when `held + quantity` would pass `max_per_customer`.
    pub fn check_customer_allowance(&self, held: u64, quantity: u32) -> Result<(), DomainError> {
        match self.max_per_customer {
            Some(max) if held + u64::from(quantity) > u64::from(max) => {
                Err(DomainError::PurchaseLimitReached {
                    product: self.id.get(),
                    max,
                    held,
                    requested: quantity,
                })
            }
            _ => Ok(()),
        }
    }

    /// Applies an admin's changes.
    pub fn apply(&mut self, changes: &ProductChanges) {
        if let Some(name) = &changes.name {
            self.name.clone_from(name);
        }
        if let Some(price) = changes.price {
            self.price = price;
        }
        if let Some(max) = changes.max_per_order {
            self.max_per_order = max;
        }
        if let Some(max) = changes.max_per_customer {
            self.max_per_customer = max;
        }
    }

    /// Puts `quantity` back (a released reservation).
    pub fn restore(&mut self, quantity: Quantity) {
        self.stock = self.stock.saturating_add(quantity.get());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorCode;

    fn product(stock: u32) -> Product {
        Product {
            id: ProductId::new(1).expect("id"),
            name: "p".into(),
            price: Money::from_trusted(100),
            stock,
            max_per_order: 5,
            max_per_customer: None,
        }
    }

    fn q(n: i64) -> Quantity {
        Quantity::new(n, "quantity").expect("quantity")
    }

    #[test]
    fn deduct_never_goes_negative() {
        let mut p = product(2);
        assert_eq!(
            p.deduct(q(3)).map_err(|e| e.code()),
            Err(ErrorCode::InsufficientStock)
        );
        assert_eq!(p.stock, 2);
        p.deduct(q(2)).expect("enough");
        assert_eq!(p.stock, 0);
        p.restore(q(2));
        assert_eq!(p.stock, 2);
    }

    #[test]
    fn per_order_limit() {
        let p = product(100);
        assert_eq!(
            p.check_order_quantity(q(6)).map_err(|e| e.code()),
            Err(ErrorCode::ExceededLimitedQuantity)
        );
        assert!(p.check_available(q(5)).is_ok());
    }

    #[test]
    fn new_product_validation_names_fields() {
        assert!(matches!(
            NewProduct::new("", 1, 1, 1),
            Err(DomainError::InvalidInput { field: "name", .. })
        ));
        assert!(matches!(
            NewProduct::new("x", 0, 1, 1),
            Err(DomainError::InvalidInput { field: "price", .. })
        ));
        assert!(matches!(
            NewProduct::new("x", 1, -1, 1),
            Err(DomainError::InvalidInput { field: "stock", .. })
        ));
        assert!(matches!(
            NewProduct::new("x", 1, 1, 0),
            Err(DomainError::InvalidInput {
                field: "maxPerOrder",
                ..
            })
        ));
    }

    #[test]
    fn per_customer_allowance() {
        let mut p = product(100);
        assert!(p.check_customer_allowance(1_000, 5).is_ok(), "no limit");
        p.max_per_customer = Some(3);
        assert!(p.check_customer_allowance(0, 3).is_ok());
        assert!(p.check_customer_allowance(2, 1).is_ok());
        assert_eq!(
            p.check_customer_allowance(2, 2),
            Err(DomainError::PurchaseLimitReached {
                product: 1,
                max: 3,
                held: 2,
                requested: 2
            })
        );
        assert_eq!(
            p.check_customer_allowance(3, 1).map_err(|e| e.code()),
            Err(ErrorCode::PurchaseLimitReached)
        );
    }

    #[test]
    fn new_product_with_a_customer_limit() {
        let base = NewProduct::new("x", 1, 1, 1).expect("valid");
        assert_eq!(base.max_per_customer, None);
        let limited = base.clone().limit_per_customer(Some(3)).expect("valid");
        assert_eq!(limited.max_per_customer, Some(3));
        for bad in [0, -1, MAX_STOCK + 1] {
            assert!(matches!(
                base.clone().limit_per_customer(Some(bad)),
                Err(DomainError::InvalidInput {
                    field: "maxPerCustomer",
                    ..
                })
            ));
        }
    }

    #[test]
    fn changes_validate_like_create_and_apply_only_what_is_given() {
        assert!(matches!(
            ProductChanges::new(None, None, None, None),
            Err(DomainError::InvalidInput { field: "body", .. })
        ));
        assert!(matches!(
            ProductChanges::new(Some("  "), None, None, None),
            Err(DomainError::InvalidInput { field: "name", .. })
        ));
        assert!(matches!(
            ProductChanges::new(None, Some(0), None, None),
            Err(DomainError::InvalidInput { field: "price", .. })
        ));
        assert!(matches!(
            ProductChanges::new(None, None, Some(0), None),
            Err(DomainError::InvalidInput {
                field: "maxPerOrder",
                ..
            })
        ));
        assert!(matches!(
            ProductChanges::new(None, None, None, Some(Some(0))),
            Err(DomainError::InvalidInput {
                field: "maxPerCustomer",
                ..
            })
        ));
        let mut p = product(7);
        let limit = ProductChanges::new(None, None, None, Some(Some(2))).expect("valid");
        assert!(limit.touches_orders());
        p.apply(&limit);
        assert_eq!((p.max_per_customer, p.name.as_str()), (Some(2), "p"));
        let rename = ProductChanges::new(Some(" q "), None, None, None).expect("valid");
        assert!(!rename.touches_orders());
        p.apply(&rename);
        assert_eq!((p.max_per_customer, p.name.as_str()), (Some(2), "q"));
        p.apply(&ProductChanges::new(None, Some(5), Some(9), Some(None)).expect("valid"));
        assert_eq!(
            (p.price, p.max_per_order, p.max_per_customer, p.stock),
            (Money::from_trusted(5), 9, None, 7)
        );
    }
}
