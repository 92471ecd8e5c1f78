//! Orders: inserted with an optional unique reference, moved between states only from the
//! expected one, and scanned for expiry and for recent sales.

use super::MemoryUnit;
use async_trait::async_trait;
use std::collections::HashMap;
use std::ops::Bound;
use stockade_application::ports::store::{NewOrder, OrderFilter, OrderRepository, StoreError};
use stockade_domain::{Order, OrderId, OrderStatus, ProductId, Timestamp, UserId};

impl MemoryUnit {
    fn put_order(&mut self, order: Order) {
        let id = order.id;
        let previous = self.state.orders.insert(id, order);
        self.on_rollback(move |s| match previous {
            Some(o) => {
                s.orders.insert(id, o);
            }
            None => {
                s.orders.remove(&id);
            }
        });
    }
}

#[async_trait]
impl OrderRepository for MemoryUnit {
    async fn insert(&mut self, new: NewOrder) -> Result<Order, StoreError> {
        self.op()?;
        if let Some(r) = &new.reference {
            if self.state.orders_by_reference.contains_key(r) {
                return Err(StoreError::Conflict("order reference"));
            }
        }
        let id = OrderId::new(self.state.next_id("order"))?;
        if let Some(r) = new.reference.clone() {
            self.state.orders_by_reference.insert(r.clone(), id);
            self.on_rollback(move |s| {
                s.orders_by_reference.remove(&r);
            });
        }
        let order = Order {
            id,
            user_id: new.user_id,
            status: OrderStatus::PendingPayment,
            lines: new.pricing.lines,
            cart_coupons: new.pricing.cart_coupons,
            subtotal: new.pricing.subtotal,
            discount: new.pricing.discount,
            total: new.pricing.total,
            created_at: new.created_at,
            expires_at: new.expires_at,
            updated_at: new.created_at,
        };
        self.put_order(order.clone());
        Ok(order)
    }

    async fn get(&mut self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.op()?;
        Ok(self.state.orders.get(&id).cloned())
    }

    async fn find_by_reference(&mut self, reference: &str) -> Result<Option<Order>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .orders_by_reference
            .get(reference)
            .and_then(|id| self.state.orders.get(id).cloned()))
    }

    async fn update_status(
        &mut self,
        id: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.op()?;
        let Some(mut order) = self.state.orders.get(&id).cloned() else {
            return Ok(false);
        };
        if order.status != from {
            return Ok(false);
        }
        order.status = to;
        order.updated_at = now;
        self.put_order(order);
        Ok(true)
    }

    async fn due_for_expiry(
        &mut self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .orders
            .values()
            .filter(|o| o.is_expired_at(now))
            .take(limit)
            .map(|o| (o.id, o.user_id))
            .collect())
    }

    async fn units_held(&mut self, user: UserId, product: ProductId) -> Result<u64, StoreError> {
        self.op()?;
        // A scan over every order: the memory store serves tests and demos, where that is cheap.
        Ok(self
            .state
            .orders
            .values()
            .filter(|o| o.user_id == user && o.status.holds_reservations())
            .flat_map(|o| &o.lines)
            .filter(|l| l.product_id == product)
            .map(|l| u64::from(l.quantity.get()))
            .sum())
    }

    async fn sales_since(&mut self, since: Timestamp) -> Result<Vec<(ProductId, u64)>, StoreError> {
        self.op()?;
        let mut sold: HashMap<ProductId, u64> = HashMap::new();
        for o in self.state.orders.values() {
            if o.status == OrderStatus::Paid && o.updated_at >= since {
                for l in &o.lines {
                    *sold.entry(l.product_id).or_default() += u64::from(l.quantity.get());
                }
            }
        }
        Ok(sold.into_iter().collect())
    }

    async fn all(&mut self) -> Result<Vec<Order>, StoreError> {
        self.op()?;
        Ok(self.state.orders.values().cloned().collect())
    }

    async fn page(
        &mut self,
        filter: OrderFilter,
        before: Option<OrderId>,
        limit: usize,
    ) -> Result<Vec<Order>, StoreError> {
        self.op()?;
        let to = before.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .state
            .orders
            .range((Bound::Unbounded, to))
            .rev()
            .map(|(_, o)| o)
            .filter(|o| filter.user.is_none_or(|u| o.user_id == u))
            .filter(|o| filter.status.is_none_or(|s| o.status == s))
            .take(limit)
            .cloned()
            .collect())
    }
}
