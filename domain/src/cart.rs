//! A user's cart: product lines with quantities, checked against stock and per-order limits.

use crate::{DomainError, Product, ProductId, Quantity, UserId};
use std::collections::BTreeMap;

/// The most distinct products one cart (and one order) may hold.
pub const MAX_LINES: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cart {
    pub user_id: UserId,
    /// product -> quantity, ordered by product id so every rendering is stable.
    pub items: BTreeMap<ProductId, Quantity>,
}

impl Cart {
    pub fn empty(user_id: UserId) -> Cart {
        Cart {
            user_id,
            items: BTreeMap::new(),
        }
    }

    /// Adds `quantity` units of `product` (on top of what the line already holds).
    ///
    /// # Errors
    /// `EXCEEDED_LIMITED_QUANTITY` / `INSUFFICIENT_STOCK` when the new line total breaks the
    /// product's limit or the stock visible now; `INVALID_INPUT` past [`MAX_LINES`].
    pub fn add(&mut self, product: &Product, quantity: Quantity) -> Result<(), DomainError> {
        let current = self.items.get(&product.id).map_or(0, |q| q.get());
        let requested = i64::from(current) + i64::from(quantity.get());
        // A sum past the product's limit is EXCEEDED_LIMITED_QUANTITY, even when it is also past
        // `Quantity::MAX` (which would otherwise surface as INVALID_INPUT).
        if requested > i64::from(product.max_per_order) {
            return Err(DomainError::ExceededLimitedQuantity {
                product: product.id.get(),
                max: product.max_per_order,
                requested: u32::try_from(requested).unwrap_or(u32::MAX),
            });
        }
        let total = Quantity::new(requested, "quantity")?;
        self.set(product, total)
    }

    /// Sets the line of `product` to exactly `quantity`.
    ///
    /// # Errors
    /// As [`Cart::add`].
    pub fn set(&mut self, product: &Product, quantity: Quantity) -> Result<(), DomainError> {
        product.check_available(quantity)?;
        if !self.items.contains_key(&product.id) && self.items.len() >= MAX_LINES {
            return Err(DomainError::invalid(
                "productId",
                format!("a cart holds at most {MAX_LINES} products"),
            ));
        }
        self.items.insert(product.id, quantity);
        Ok(())
    }

    /// Removes a line; removing a product that is not there is not an error.
    pub fn remove(&mut self, product: ProductId) {
        self.items.remove(&product);
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorCode, Money};

    fn product(id: i64, stock: u32, max: u32) -> Product {
        Product {
            id: ProductId::new(id).expect("id"),
            name: format!("p{id}"),
            price: Money::from_trusted(1000),
            stock,
            max_per_order: max,
            max_per_customer: None,
        }
    }

    fn q(n: i64) -> Quantity {
        Quantity::new(n, "quantity").expect("quantity")
    }

    #[test]
    fn add_accumulates_and_respects_limits() {
        let mut cart = Cart::empty(UserId::new(1).expect("id"));
        let p = product(1, 10, 5);
        cart.add(&p, q(3)).expect("fits");
        let err = cart.add(&p, q(3)).expect_err("6 > max 5");
        assert_eq!(err.code(), ErrorCode::ExceededLimitedQuantity);
        assert_eq!(cart.items.get(&p.id), Some(&q(3)), "unchanged on error");
        let scarce = product(2, 1, 5);
        assert_eq!(
            cart.add(&scarce, q(2)).map_err(|e| e.code()),
            Err(ErrorCode::InsufficientStock)
        );
        cart.remove(p.id);
        assert!(cart.is_empty());
    }

    #[test]
    fn a_sum_past_quantity_max_is_still_a_limit_error() {
        let mut cart = Cart::empty(UserId::new(1).expect("id"));
        let p = product(1, 2_000_000, Quantity::MAX);
        cart.add(&p, q(i64::from(Quantity::MAX))).expect("fits");
        assert_eq!(
            cart.add(&p, q(1)).map_err(|e| e.code()),
            Err(ErrorCode::ExceededLimitedQuantity)
        );
        let small = product(2, 10, 5);
        cart.add(&small, q(3)).expect("fits");
        assert_eq!(
            cart.add(&small, q(i64::from(Quantity::MAX)))
                .map_err(|e| e.code()),
            Err(ErrorCode::ExceededLimitedQuantity)
        );
    }
}
