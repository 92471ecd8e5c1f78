//! Carts: one row per user and product, kept as `REMOVED` rather than deleted.

use super::{e, PgUnit, R};
use crate::convert::{id, qty};
use async_trait::async_trait;
use stockade_application::ports::store::CartRepository;
use stockade_domain::{Cart, ProductId, UserId};

#[async_trait]
impl CartRepository for PgUnit {
    async fn get(&mut self, user: UserId) -> R<Cart> {
        let rows = sqlx::query!(
            "SELECT product_id, quantity FROM cart_items
             WHERE user_id = $1 AND state = 'ACTIVE' ORDER BY product_id",
            user.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?;
        let mut cart = Cart::empty(user);
        for r in rows {
            cart.items
                .insert(id(r.product_id, ProductId::new)?, qty(r.quantity)?);
        }
        Ok(cart)
    }

    async fn save(&mut self, cart: &Cart) -> R<()> {
        let keep: Vec<i64> = cart.items.keys().map(|p| p.get()).collect();
        sqlx::query!(
            "UPDATE cart_items SET state = 'REMOVED', updated_at = statement_timestamp()
             WHERE user_id = $1 AND state = 'ACTIVE' AND NOT (product_id = ANY($2))",
            cart.user_id.get(),
            &keep as &[i64],
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        for (p, q) in &cart.items {
            sqlx::query!(
                "INSERT INTO cart_items (user_id, product_id, quantity, state, created_at, updated_at)
                 VALUES ($1, $2, $3, 'ACTIVE', statement_timestamp(), statement_timestamp())
                 ON CONFLICT (user_id, product_id)
                 DO UPDATE SET quantity = EXCLUDED.quantity, state = 'ACTIVE', updated_at = statement_timestamp()",
                cart.user_id.get(),
                p.get(),
                i32::try_from(q.get()).unwrap_or(i32::MAX),
            )
            .execute(&mut *self.tx)
            .await
            .map_err(e)?;
        }
        Ok(())
    }
}
