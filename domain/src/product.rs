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
}

/// What an admin gives to create a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub price: Money,
    pub stock: u32,
    pub max_per_order: u32,
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
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(DomainError::invalid("name", "must be 1 to 200 characters"));
        }
        let price = Money::new(price, "price")?;
        if price == Money::ZERO {
            return Err(DomainError::invalid("price", "must be positive"));
        }
        let stock = stock_level(stock)?;
        let max_per_order = u32::try_from(max_per_order)
            .ok()
            .filter(|m| (1..=Quantity::MAX).contains(m))
            .ok_or_else(|| {
                DomainError::invalid("maxPerOrder", format!("must be 1 to {}", Quantity::MAX))
            })?;
        Ok(NewProduct {
            name: name.to_owned(),
            price,
            stock,
            max_per_order,
        })
    }
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
}
