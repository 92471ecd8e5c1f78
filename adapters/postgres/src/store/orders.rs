//! Orders with their lines and cart coupons.
//!
//! An order is read in one round trip: its lines and coupons come along as JSON arrays built
//! by the statement (and its payments too, for `order_with_payments`), rather than as three
//! queries or a join that repeats the order once per line.

use super::{e, limit, PgUnit, R};
use crate::convert::{at, id, money, qty};
use crate::error::corrupt;
use async_trait::async_trait;
use serde_json::Value;
use stockade_application::ports::store::{NewOrder, OrderFilter, OrderRepository, StoreError};
use stockade_domain::{
    Order, OrderId, OrderLine, OrderStatus, Payment, PaymentId, PaymentStatus, ProductId,
    Timestamp, UserCouponId, UserId,
};
use time::OffsetDateTime;

/// An order as the loading statements read it: its columns, its lines and cart coupons as JSON
/// arrays, and its payments as one too when asked for (`NULL` otherwise).
#[derive(Debug, sqlx::FromRow)]
struct OrderRow {
    id: i64,
    user_id: i64,
    status: String,
    subtotal: i64,
    discount: i64,
    total: i64,
    expires_at: OffsetDateTime,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    lines: Value,
    coupons: Value,
    payments: Option<Value>,
}

/// The loading statement: `$payments` is the payments column (or `NULL`), `$filter` the
/// `WHERE` and `ORDER BY` clauses (or nothing); both fixed fragments, so that every variant is a literal
/// checked at compile time.
macro_rules! load_orders {
    ($payments:tt, $filter:tt $(, $arg:expr)*) => {
        sqlx::query_as!(
            OrderRow,
            r#"SELECT id, user_id, status, subtotal, discount, total, expires_at, created_at, updated_at,
                COALESCE((SELECT json_agg(json_build_object(
                    'product_id', l.product_id, 'name', l.name, 'unit_price', l.unit_price,
                    'quantity', l.quantity, 'line_total', l.line_total, 'discount', l.discount,
                    'user_coupon_id', l.user_coupon_id) ORDER BY l.line_no)
                    FROM order_lines l WHERE l.order_id = orders.id), '[]') AS "lines!",
                COALESCE((SELECT json_agg(json_build_object(
                    'user_coupon_id', c.user_coupon_id, 'discount', c.discount) ORDER BY c.position)
                    FROM order_coupons c WHERE c.order_id = orders.id), '[]') AS "coupons!","#
                + $payments + " FROM orders " + $filter
            $(, $arg)*
        )
    };
}

fn num(v: &Value, k: &str) -> R<i64> {
    v[k].as_i64().ok_or_else(|| corrupt(k))
}

impl OrderRow {
    /// The order, and its payments if they were read (none otherwise).
    fn into_order(self) -> R<(Order, Vec<Payment>)> {
        let mut lines = Vec::new();
        for l in self.lines.as_array().into_iter().flatten() {
            lines.push(OrderLine {
                product_id: id(num(l, "product_id")?, ProductId::new)?,
                name: l["name"].as_str().unwrap_or_default().to_owned(),
                unit_price: money(num(l, "unit_price")?),
                quantity: qty(
                    i32::try_from(num(l, "quantity")?).map_err(|_| corrupt("quantity"))?,
                )?,
                line_total: money(num(l, "line_total")?),
                discount: money(num(l, "discount")?),
                user_coupon_id: l["user_coupon_id"]
                    .as_i64()
                    .map(|u| id(u, UserCouponId::new))
                    .transpose()?,
            });
        }
        let mut cart_coupons = Vec::new();
        for c in self.coupons.as_array().into_iter().flatten() {
            cart_coupons.push((
                id(num(c, "user_coupon_id")?, UserCouponId::new)?,
                money(num(c, "discount")?),
            ));
        }
        let mut paid = Vec::new();
        for p in self.payments.iter().flat_map(|p| p.as_array()).flatten() {
            let status = p["status"].as_str().unwrap_or_default();
            paid.push(Payment {
                id: id(num(p, "id")?, PaymentId::new)?,
                order_id: id(num(p, "order_id")?, OrderId::new)?,
                user_id: id(num(p, "user_id")?, UserId::new)?,
                amount: money(num(p, "amount")?),
                status: PaymentStatus::parse(status).ok_or_else(|| corrupt("payment status"))?,
                reference: p["idempotency_ref"].as_str().map(str::to_owned),
                created_at: Timestamp::from_millis(num(p, "created_at")?),
                updated_at: Timestamp::from_millis(num(p, "updated_at")?),
            });
        }
        let order = Order {
            id: id(self.id, OrderId::new)?,
            user_id: id(self.user_id, UserId::new)?,
            status: OrderStatus::parse(&self.status).ok_or_else(|| corrupt("order status"))?,
            lines,
            cart_coupons,
            subtotal: money(self.subtotal),
            discount: money(self.discount),
            total: money(self.total),
            created_at: crate::convert::ts(self.created_at),
            expires_at: crate::convert::ts(self.expires_at),
            updated_at: crate::convert::ts(self.updated_at),
        };
        Ok((order, paid))
    }
}

impl PgUnit {
    /// The order with its payments (oldest first), in one round trip.
    pub(super) async fn order_and_payments(
        &mut self,
        oid: OrderId,
    ) -> R<Option<(Order, Vec<Payment>)>> {
        load_orders!(
            r#"
                COALESCE((SELECT json_agg(json_build_object(
                    'id', p.id, 'order_id', p.order_id, 'user_id', p.user_id, 'amount', p.amount,
                    'status', p.status, 'idempotency_ref', p.idempotency_ref,
                    'created_at', floor(extract(epoch FROM p.created_at) * 1000)::bigint,
                    'updated_at', floor(extract(epoch FROM p.updated_at) * 1000)::bigint)
                    ORDER BY p.id)
                    FROM payments p WHERE p.order_id = orders.id), '[]') AS "payments?""#,
            "WHERE id = $1",
            oid.get()
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(OrderRow::into_order)
        .transpose()
    }
}

#[async_trait]
impl OrderRepository for PgUnit {
    async fn insert(&mut self, new: NewOrder) -> R<Order> {
        let p = &new.pricing;
        let n = |i: usize| i32::try_from(i).unwrap_or(i32::MAX);
        let line_no: Vec<i32> = (0..p.lines.len()).map(n).collect();
        let product: Vec<i64> = p.lines.iter().map(|l| l.product_id.get()).collect();
        let name: Vec<&str> = p.lines.iter().map(|l| l.name.as_str()).collect();
        let unit: Vec<i64> = p.lines.iter().map(|l| l.unit_price.won()).collect();
        let quantity: Vec<i32> = p
            .lines
            .iter()
            .map(|l| n(l.quantity.get() as usize))
            .collect();
        let total: Vec<i64> = p.lines.iter().map(|l| l.line_total.won()).collect();
        let off: Vec<i64> = p.lines.iter().map(|l| l.discount.won()).collect();
        let coupon: Vec<Option<i64>> = p
            .lines
            .iter()
            .map(|l| l.user_coupon_id.map(|u| u.get()))
            .collect();
        let position: Vec<i32> = (0..p.cart_coupons.len()).map(n).collect();
        let cart_coupon: Vec<i64> = p.cart_coupons.iter().map(|(u, _)| u.get()).collect();
        let cart_off: Vec<i64> = p.cart_coupons.iter().map(|(_, m)| m.won()).collect();
        // The order, its lines and its cart coupons in one statement.
        let oid = sqlx::query_scalar!(
            r#"WITH o AS (
                 INSERT INTO orders (user_id, status, subtotal, discount, total, expires_at, created_at, updated_at, idempotency_ref)
                 VALUES ($1, 'PENDING_PAYMENT', $2, $3, $4, $5, $6, $6, $18)
                 ON CONFLICT (idempotency_ref) WHERE idempotency_ref IS NOT NULL DO NOTHING
                 RETURNING id),
             lines AS (
                 INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price, quantity,
                                          line_total, discount, user_coupon_id, created_at, updated_at)
                 SELECT o.id, t.*, $6, $6 FROM o,
                        unnest($7::int[], $8::bigint[], $9::text[], $10::bigint[], $11::int[],
                               $12::bigint[], $13::bigint[], $14::bigint[]) AS t),
             coupons AS (
                 INSERT INTO order_coupons (order_id, position, user_coupon_id, discount, created_at, updated_at)
                 SELECT o.id, t.*, $6, $6 FROM o, unnest($15::int[], $16::bigint[], $17::bigint[]) AS t)
             SELECT id AS "id!" FROM o"#,
            new.user_id.get(),
            p.subtotal.won(),
            p.discount.won(),
            p.total.won(),
            at(new.expires_at),
            at(new.created_at),
            &line_no as &[i32],
            &product as &[i64],
            &name as &[&str],
            &unit as &[i64],
            &quantity as &[i32],
            &total as &[i64],
            &off as &[i64],
            &coupon as &[Option<i64>],
            &position as &[i32],
            &cart_coupon as &[i64],
            &cart_off as &[i64],
            new.reference.as_deref(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        let Some(oid) = oid else {
            return Err(StoreError::Conflict("order reference"));
        };
        // Timestamps round-trip through the database at microsecond precision; the domain's
        // are milliseconds, so the values written are exactly these.
        Ok(Order {
            id: id(oid, OrderId::new)?,
            user_id: new.user_id,
            status: OrderStatus::PendingPayment,
            lines: p.lines.clone(),
            cart_coupons: p.cart_coupons.clone(),
            subtotal: p.subtotal,
            discount: p.discount,
            total: p.total,
            created_at: new.created_at,
            expires_at: new.expires_at,
            updated_at: new.created_at,
        })
    }

    async fn get(&mut self, oid: OrderId) -> R<Option<Order>> {
        load_orders!(r#" NULL::json AS "payments?""#, "WHERE id = $1", oid.get())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(e)?
            .map(|row| Ok(row.into_order()?.0))
            .transpose()
    }

    async fn insert_many(&mut self, mut news: Vec<NewOrder>) -> R<Vec<Order>> {
        // One order: the single statement is lighter to plan than the batch's.
        if news.len() == 1 {
            if let Some(new) = news.pop() {
                return Ok(vec![OrderRepository::insert(self, new).await?]);
            }
        }
        crate::batch::insert_orders(&mut self.tx, news).await
    }

    async fn find_by_reference(&mut self, reference: &str) -> R<Option<Order>> {
        let oid = sqlx::query_scalar!(
            "SELECT id FROM orders WHERE idempotency_ref = $1",
            reference
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        match oid {
            Some(oid) => OrderRepository::get(self, id(oid, OrderId::new)?).await,
            None => Ok(None),
        }
    }

    async fn update_status(
        &mut self,
        oid: OrderId,
        from: OrderStatus,
        to: OrderStatus,
        now: Timestamp,
    ) -> R<bool> {
        let done = sqlx::query!(
            "UPDATE orders SET status = $3, updated_at = $4 WHERE id = $1 AND status = $2",
            oid.get(),
            from.as_str(),
            to.as_str(),
            at(now),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn due_for_expiry(&mut self, now: Timestamp, max: usize) -> R<Vec<(OrderId, UserId)>> {
        sqlx::query!(
            "SELECT id, user_id FROM orders
             WHERE status = 'PENDING_PAYMENT' AND expires_at <= $1
             ORDER BY expires_at LIMIT $2",
            at(now),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|r| Ok((id(r.id, OrderId::new)?, id(r.user_id, UserId::new)?)))
        .collect()
    }

    async fn units_held(&mut self, user: UserId, product: ProductId) -> R<u64> {
        // The user's orders by `orders_user_idx`, or the product's lines by
        // `order_lines_product_idx`: the planner takes the narrower side.
        let held = sqlx::query_scalar!(
            r#"SELECT COALESCE(SUM(l.quantity), 0)::BIGINT AS "held!"
             FROM orders o JOIN order_lines l ON l.order_id = o.id
             WHERE o.user_id = $1 AND l.product_id = $2
               AND o.status NOT IN ('CANCELLED', 'EXPIRED', 'PAYMENT_FAILED')"#,
            user.get(),
            product.get(),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(u64::try_from(held).unwrap_or(0))
    }

    async fn sales_since(&mut self, since: Timestamp) -> R<Vec<(ProductId, u64)>> {
        sqlx::query!(
            r#"SELECT l.product_id, SUM(l.quantity)::BIGINT AS "sold!"
             FROM orders o JOIN order_lines l ON l.order_id = o.id
             WHERE o.status = 'PAID' AND o.updated_at >= $1
             GROUP BY l.product_id"#,
            at(since),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|r| {
            Ok((
                id(r.product_id, ProductId::new)?,
                u64::try_from(r.sold).unwrap_or(0),
            ))
        })
        .collect()
    }

    async fn page(
        &mut self,
        filter: OrderFilter,
        before: Option<OrderId>,
        max: usize,
    ) -> R<Vec<Order>> {
        // One statement per shape, so each keeps its index: (user_id, id), (status, id) or the
        // primary key, walked backwards from the cursor.
        let before = before.map_or(i64::MAX, OrderId::get);
        let status = filter.status.map(OrderStatus::as_str);
        let rows = match (filter.user, status) {
            (Some(user), status) => {
                load_orders!(
                    r#" NULL::json AS "payments?""#,
                    "WHERE user_id = $1 AND id < $2 AND ($3::text IS NULL OR status = $3)
                     ORDER BY id DESC LIMIT $4",
                    user.get(),
                    before,
                    status,
                    limit(max)
                )
                .fetch_all(&mut *self.tx)
                .await
            }
            (None, Some(status)) => {
                load_orders!(
                    r#" NULL::json AS "payments?""#,
                    "WHERE status = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
                    status,
                    before,
                    limit(max)
                )
                .fetch_all(&mut *self.tx)
                .await
            }
            (None, None) => {
                load_orders!(
                    r#" NULL::json AS "payments?""#,
                    "WHERE id < $1 ORDER BY id DESC LIMIT $2",
                    before,
                    limit(max)
                )
                .fetch_all(&mut *self.tx)
                .await
            }
        };
        rows.map_err(e)?
            .into_iter()
            .map(|row| Ok(row.into_order()?.0))
            .collect()
    }

    async fn all(&mut self) -> R<Vec<Order>> {
        load_orders!(r#" NULL::json AS "payments?""#, "ORDER BY id")
            .fetch_all(&mut *self.tx)
            .await
            .map_err(e)?
            .into_iter()
            .map(|row| Ok(row.into_order()?.0))
            .collect()
    }
}
