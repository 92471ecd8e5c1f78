//! Payments and the payment saga log. Confirming a payment moves the payment and its order
//! together and logs the saga step, all in the caller's unit; the saga log remembers when each
//! saga began so recovery can find the ones left open after a debit.

use super::MemoryUnit;
use async_trait::async_trait;
use stockade_application::ports::store::{
    OrderRepository, PaymentRepository, SagaStep, StoreError,
};
use stockade_domain::{
    Money, Order, OrderId, OrderStatus, Payment, PaymentId, PaymentStatus, Timestamp, UserId,
};

impl MemoryUnit {
    fn put_payment(&mut self, p: Payment) {
        let id = p.id;
        let previous = self.state.payments.insert(id, p);
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.payments.insert(id, p);
            }
            None => {
                s.payments.remove(&id);
            }
        });
    }
}

#[async_trait]
impl PaymentRepository for MemoryUnit {
    async fn insert(
        &mut self,
        order: &Order,
        amount: Money,
        reference: Option<&str>,
        now: Timestamp,
    ) -> Result<Payment, StoreError> {
        self.op()?;
        let id = PaymentId::new(self.state.next_id("payment"))?;
        let payment = Payment {
            id,
            order_id: order.id,
            user_id: order.user_id,
            amount,
            status: PaymentStatus::Pending,
            reference: reference.map(str::to_owned),
            created_at: now,
            updated_at: now,
        };
        self.put_payment(payment.clone());
        let oid = order.id;
        self.state
            .payments_by_order
            .entry(oid)
            .or_default()
            .push(id);
        self.on_rollback(move |s| {
            if let Some(v) = s.payments_by_order.get_mut(&oid) {
                v.pop();
            }
        });
        Ok(payment)
    }

    async fn for_order(&mut self, order: OrderId) -> Result<Vec<Payment>, StoreError> {
        self.op()?;
        Ok(self
            .state
            .payments_by_order
            .get(&order)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.state.payments.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn update_status(
        &mut self,
        id: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.op()?;
        let Some(mut p) = self.state.payments.get(&id).cloned() else {
            return Ok(false);
        };
        if p.status != from {
            return Ok(false);
        }
        p.status = to;
        p.updated_at = now;
        self.put_payment(p);
        Ok(true)
    }

    async fn confirm(&mut self, payment: &Payment, now: Timestamp) -> Result<bool, StoreError> {
        self.op()?;
        let pending = self
            .state
            .payments
            .get(&payment.id)
            .is_some_and(|p| p.status == PaymentStatus::Pending);
        let unpaid = self
            .state
            .orders
            .get(&payment.order_id)
            .is_some_and(|o| o.status == OrderStatus::PendingPayment);
        if !(pending && unpaid) {
            return Ok(false);
        }
        PaymentRepository::update_status(
            self,
            payment.id,
            PaymentStatus::Pending,
            PaymentStatus::Approved,
            now,
        )
        .await?;
        OrderRepository::update_status(
            self,
            payment.order_id,
            OrderStatus::PendingPayment,
            OrderStatus::Paid,
            now,
        )
        .await?;
        self.log_saga_step(payment, SagaStep::Confirmed, now)
            .await?;
        Ok(true)
    }

    async fn log_saga_step(
        &mut self,
        payment: &Payment,
        step: SagaStep,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.op()?;
        let id = payment.id;
        let started = self.state.sagas.get(&id).map_or(now, |s| s.3);
        let previous = self
            .state
            .sagas
            .insert(id, (payment.order_id, payment.user_id, step, started));
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.sagas.insert(id, p);
            }
            None => {
                s.sagas.remove(&id);
            }
        });
        Ok(())
    }

    async fn open_sagas(
        &mut self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(OrderId, UserId)>, StoreError> {
        self.op()?;
        let mut open: Vec<_> = self
            .state
            .sagas
            .values()
            .filter(|(_, _, step, at)| *step == SagaStep::Debited && *at < before)
            .map(|(order, user, _, at)| (*at, *order, *user))
            .collect();
        open.sort();
        Ok(open
            .into_iter()
            .take(limit)
            .map(|(_, order, user)| (order, user))
            .collect())
    }
}
