//! The set-based writes of a combined turn (docs/decisions/0012): a batch of orders with their
//! lines and coupons in one statement, and a batch of idempotency outcomes in another, each as
//! `unnest` of arrays, so a turn of N requests costs the same few round trips as a turn of one.

use crate::convert::{at, id};
use crate::error::store_error;
use sqlx::PgConnection;
use stockade_application::ports::idempotency::{StoredOutcome, Ticket};
use stockade_application::ports::store::{NewOrder, StoreError};
use stockade_domain::{
    Coupon, DomainError, Order, OrderId, OrderStatus, Timestamp, UserCoupon, UserCouponId,
    UserCouponStatus, UserId,
};
use time::OffsetDateTime;

type R<T> = Result<T, StoreError>;

fn int(i: usize) -> i32 {
    i32::try_from(i).unwrap_or(i32::MAX)
}

/// Inserts `news` (with their lines and cart coupons) in one statement and answers the orders
/// in the same order. Ids come from the orders' sequence, one per order, before the rows are
/// written, so lines find their order by its position in the batch.
pub(crate) async fn insert_orders(conn: &mut PgConnection, news: Vec<NewOrder>) -> R<Vec<Order>> {
    if news.is_empty() {
        return Ok(Vec::new());
    }
    // Orders, by position (1-based, as `WITH ORDINALITY` numbers them).
    let user: Vec<i64> = news.iter().map(|n| n.user_id.get()).collect();
    let subtotal: Vec<i64> = news.iter().map(|n| n.pricing.subtotal.won()).collect();
    let discount: Vec<i64> = news.iter().map(|n| n.pricing.discount.won()).collect();
    let total: Vec<i64> = news.iter().map(|n| n.pricing.total.won()).collect();
    let expires: Vec<OffsetDateTime> = news.iter().map(|n| at(n.expires_at)).collect();
    let created: Vec<OffsetDateTime> = news.iter().map(|n| at(n.created_at)).collect();
    let reference: Vec<Option<&str>> = news.iter().map(|n| n.reference.as_deref()).collect();
    // Lines and cart coupons, each naming its order's position.
    let (mut l_ord, mut l_no, mut l_product, mut l_name, mut l_unit) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut l_qty, mut l_total, mut l_off, mut l_coupon, mut l_at) =
        (vec![], vec![], vec![], vec![], vec![]);
    let (mut c_ord, mut c_pos, mut c_coupon, mut c_off, mut c_at) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (i, n) in news.iter().enumerate() {
        let ord = i64::try_from(i + 1).unwrap_or(i64::MAX);
        for (no, l) in n.pricing.lines.iter().enumerate() {
            l_ord.push(ord);
            l_no.push(int(no));
            l_product.push(l.product_id.get());
            l_name.push(l.name.as_str());
            l_unit.push(l.unit_price.won());
            l_qty.push(int(l.quantity.get() as usize));
            l_total.push(l.line_total.won());
            l_off.push(l.discount.won());
            l_coupon.push(l.user_coupon_id.map(|u| u.get()));
            l_at.push(at(n.created_at));
        }
        for (pos, (coupon, off)) in n.pricing.cart_coupons.iter().enumerate() {
            c_ord.push(ord);
            c_pos.push(int(pos));
            c_coupon.push(coupon.get());
            c_off.push(off.won());
            c_at.push(at(n.created_at));
        }
    }
    let ids: Vec<i64> = sqlx::query_scalar!(
        r#"WITH ids AS (
             SELECT ord, nextval(pg_get_serial_sequence('orders', 'id')) AS id
             FROM generate_series(1, $1::bigint) AS ord),
         o AS (
             INSERT INTO orders (id, user_id, status, subtotal, discount, total, expires_at,
                                 created_at, updated_at, idempotency_ref)
             SELECT ids.id, t.user_id, 'PENDING_PAYMENT', t.subtotal, t.discount, t.total,
                    t.expires_at, t.created_at, t.created_at, t.ref
             FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[],
                         $6::timestamptz[], $7::timestamptz[], $8::text[])
                  WITH ORDINALITY AS t(user_id, subtotal, discount, total, expires_at, created_at, ref, ord)
             JOIN ids USING (ord)),
         lines AS (
             INSERT INTO order_lines (order_id, line_no, product_id, name, unit_price, quantity,
                                      line_total, discount, user_coupon_id, created_at, updated_at)
             SELECT ids.id, t.line_no, t.product_id, t.name, t.unit_price, t.quantity,
                    t.line_total, t.discount, t.coupon, t.at, t.at
             FROM unnest($9::bigint[], $10::int[], $11::bigint[], $12::text[], $13::bigint[],
                         $14::int[], $15::bigint[], $16::bigint[], $17::bigint[], $18::timestamptz[])
                  AS t(ord, line_no, product_id, name, unit_price, quantity, line_total, discount, coupon, at)
             JOIN ids USING (ord)),
         coupons AS (
             INSERT INTO order_coupons (order_id, position, user_coupon_id, discount, created_at, updated_at)
             SELECT ids.id, t.position, t.coupon, t.discount, t.at, t.at
             FROM unnest($19::bigint[], $20::int[], $21::bigint[], $22::bigint[], $23::timestamptz[])
                  AS t(ord, position, coupon, discount, at)
             JOIN ids USING (ord))
         SELECT id AS "id!" FROM ids ORDER BY ord"#,
        i64::try_from(news.len()).unwrap_or(i64::MAX),
        &user as &[i64],
        &subtotal as &[i64],
        &discount as &[i64],
        &total as &[i64],
        &expires as &[OffsetDateTime],
        &created as &[OffsetDateTime],
        &reference as &[Option<&str>],
        &l_ord as &[i64],
        &l_no as &[i32],
        &l_product as &[i64],
        &l_name as &[&str],
        &l_unit as &[i64],
        &l_qty as &[i32],
        &l_total as &[i64],
        &l_off as &[i64],
        &l_coupon as &[Option<i64>],
        &l_at as &[OffsetDateTime],
        &c_ord as &[i64],
        &c_pos as &[i32],
        &c_coupon as &[i64],
        &c_off as &[i64],
        &c_at as &[OffsetDateTime],
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(store_error)?;
    if ids.len() != news.len() {
        return Err(crate::error::corrupt("order ids of a batch"));
    }
    news.into_iter()
        .zip(ids)
        .map(|(n, oid)| {
            Ok(Order {
                id: id(oid, OrderId::new)?,
                user_id: n.user_id,
                status: OrderStatus::PendingPayment,
                lines: n.pricing.lines,
                cart_coupons: n.pricing.cart_coupons,
                subtotal: n.pricing.subtotal,
                discount: n.pricing.discount,
                total: n.pricing.total,
                created_at: n.created_at,
                expires_at: n.expires_at,
                updated_at: n.created_at,
            })
        })
        .collect()
}

/// Completes every record of `outcomes` in one statement; [`StoreError::TicketLost`] when any
/// no longer belongs to its ticket.
pub(crate) async fn record_outcomes(
    conn: &mut PgConnection,
    outcomes: &[(Ticket, StoredOutcome)],
    ttl: std::time::Duration,
) -> R<()> {
    let scope: Vec<&str> = outcomes.iter().map(|(t, _)| t.scope.0.as_str()).collect();
    let key: Vec<&str> = outcomes.iter().map(|(t, _)| t.key.as_str()).collect();
    let owner: Vec<&str> = outcomes.iter().map(|(t, _)| t.owner.as_str()).collect();
    let ok: Vec<bool> = outcomes.iter().map(|(_, o)| o.ok).collect();
    let body: Vec<&[u8]> = outcomes.iter().map(|(_, o)| o.body.as_slice()).collect();
    let done = sqlx::query!(
        "UPDATE idempotency_keys k
         SET state = 'DONE', ok = t.ok, body = t.body,
             expires_at = statement_timestamp() + ($6 || ' milliseconds')::interval,
             updated_at = statement_timestamp()
         FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::bytea[])
              AS t(scope, key, owner, ok, body)
         WHERE k.scope = t.scope AND k.key = t.key AND k.owner = t.owner AND k.state = 'IN_FLIGHT'",
        &scope as &[&str],
        &key as &[&str],
        &owner as &[&str],
        &ok as &[bool],
        &body as &[&[u8]],
        ttl.as_millis().max(1).to_string(),
    )
    .execute(&mut *conn)
    .await
    .map_err(store_error)?;
    if usize::try_from(done.rows_affected()).ok() == Some(outcomes.len()) {
        Ok(())
    } else {
        Err(StoreError::TicketLost)
    }
}

/// [`CouponRepository::issue_each`] in one statement: the users who hold no coupon yet are
/// taken in the order listed while the quantity lasts (the coupon's row locked first), their
/// rows go in (in user order, as every batch inserts them), the count moves by as many, and
/// their failures are cleared. Each listed user comes back with what happened to them.
///
/// [`CouponRepository::issue_each`]: stockade_application::ports::store::CouponRepository::issue_each
pub(crate) async fn issue_each(
    conn: &mut PgConnection,
    coupon: &Coupon,
    users: &[UserId],
    now: Timestamp,
) -> R<Vec<Result<UserCoupon, DomainError>>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = users.iter().map(|u| u.get()).collect();
    let rows = sqlx::query!(
        r#"WITH claim AS (
             SELECT user_id, ord FROM unnest($2::bigint[]) WITH ORDINALITY AS c(user_id, ord)
         ), room AS (
             SELECT greatest(quantity - issued, 0) AS room FROM coupons WHERE id = $1 FOR UPDATE
         ), held AS (
             SELECT user_id FROM user_coupons
             WHERE coupon_id = $1 AND user_id IN (SELECT user_id FROM claim)
         ), fresh AS (
             SELECT DISTINCT ON (user_id) user_id, ord FROM claim
             WHERE user_id NOT IN (SELECT user_id FROM held)
             ORDER BY user_id, ord
         ), chosen AS (
             SELECT user_id FROM fresh ORDER BY ord LIMIT (SELECT room FROM room)
         ), issued AS (
             INSERT INTO user_coupons
                 (coupon_id, user_id, status, issued_at, expires_at, created_at, updated_at)
             SELECT $1, user_id, 'ISSUED', $3, $4, $3, $3 FROM chosen ORDER BY user_id
             ON CONFLICT (coupon_id, user_id) DO NOTHING
             RETURNING id, user_id
         ), counted AS (
             UPDATE coupons SET issued = issued + (SELECT count(*) FROM issued),
                                updated_at = statement_timestamp()
             WHERE id = $1 AND (SELECT count(*) FROM issued) > 0
               AND issued + (SELECT count(*) FROM issued) <= quantity
             RETURNING id
         ), cleared AS (
             DELETE FROM failed_issuances
             WHERE coupon_id = $1 AND user_id IN (SELECT user_id FROM issued)
         )
         SELECT c.user_id AS "user_id!", c.user_id IN (SELECT user_id FROM held) AS "held!",
                i.id AS "issued?", (SELECT count(*) FROM counted) AS "counted!"
         FROM claim c LEFT JOIN issued i ON i.user_id = c.user_id
         ORDER BY c.ord"#,
        coupon.id.get(),
        &ids as &[i64],
        at(now),
        at(coupon.expiry_for(now)),
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(store_error)?;
    if rows.len() != users.len() {
        return Err(crate::error::corrupt("answers of a coupon batch"));
    }
    if rows.iter().any(|r| r.issued.is_some()) && rows[0].counted == 0 {
        // The count could not move (the quantity changed underneath): the caller drops the
        // unit, which removes the rows inserted above.
        return Err(DomainError::CouponSoldOut.into());
    }
    let mut answered: std::collections::HashSet<i64> = std::collections::HashSet::new();
    rows.into_iter()
        .map(|r| {
            let (user, held) = (r.user_id, r.held);
            let first = answered.insert(user);
            Ok(match r.issued {
                Some(ucid) if first => Ok(UserCoupon {
                    id: id(ucid, UserCouponId::new)?,
                    coupon_id: coupon.id,
                    user_id: id(user, UserId::new)?,
                    status: UserCouponStatus::Issued,
                    issued_at: now,
                    expires_at: coupon.expiry_for(now),
                    order_id: None,
                }),
                _ if held || !first => Err(DomainError::CouponAlreadyIssued),
                _ => Err(DomainError::CouponSoldOut),
            })
        })
        .collect()
}
