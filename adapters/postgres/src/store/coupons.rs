//! Coupon policies, the coupons issued to users, and the failures recorded for FLASH
//! reservations that could not be persisted.

use super::{e, limit, PgUnit, R};
use crate::convert::{at, id, money, ts, u32_of};
use crate::error::corrupt;
use async_trait::async_trait;
use stockade_application::ports::store::{CouponRepository, IssuanceFailure};
use stockade_domain::{
    Coupon, CouponId, CouponKind, Discount, DomainError, IssuanceMode, NewCoupon, OrderId,
    Timestamp, UserCoupon, UserCouponId, UserCouponStatus, UserId,
};
use time::OffsetDateTime;

/// A row of `coupons`, as the store reads it.
#[derive(Debug, sqlx::FromRow)]
struct CouponRow {
    id: i64,
    name: String,
    kind: String,
    discount_type: String,
    discount_value: i64,
    max_discount: Option<i64>,
    min_order_amount: i64,
    quantity: i32,
    mode: String,
    valid_from: Option<OffsetDateTime>,
    valid_until: Option<OffsetDateTime>,
    /// How many were issued (read along, used by the pages that answer it).
    issued: i32,
}

impl CouponRow {
    fn into_pair(self) -> R<(Coupon, u32)> {
        let issued = u32_of(i64::from(self.issued));
        Ok((self.into_coupon()?, issued))
    }

    fn into_coupon(self) -> R<Coupon> {
        Ok(Coupon {
            id: id(self.id, CouponId::new)?,
            name: self.name,
            kind: CouponKind::parse(&self.kind).ok_or_else(|| corrupt("coupon kind"))?,
            discount: Discount::new(&self.discount_type, self.discount_value, self.max_discount)
                .map_err(|_| corrupt("discount"))?,
            min_order_amount: money(self.min_order_amount),
            quantity: u32_of(i64::from(self.quantity)),
            mode: IssuanceMode::parse(&self.mode).ok_or_else(|| corrupt("coupon mode"))?,
            valid_from: self.valid_from.map(ts),
            valid_until: self.valid_until.map(ts),
        })
    }
}

/// A row of `user_coupons`, as the store reads it.
#[derive(Debug, sqlx::FromRow)]
struct UserCouponRow {
    id: i64,
    coupon_id: i64,
    user_id: i64,
    status: String,
    order_id: Option<i64>,
    issued_at: OffsetDateTime,
    expires_at: OffsetDateTime,
}

impl UserCouponRow {
    fn into_user_coupon(self) -> R<UserCoupon> {
        Ok(UserCoupon {
            id: id(self.id, UserCouponId::new)?,
            coupon_id: id(self.coupon_id, CouponId::new)?,
            user_id: id(self.user_id, UserId::new)?,
            status: UserCouponStatus::parse(&self.status)
                .ok_or_else(|| corrupt("user coupon status"))?,
            issued_at: ts(self.issued_at),
            expires_at: ts(self.expires_at),
            order_id: self.order_id.map(|o| id(o, OrderId::new)).transpose()?,
        })
    }
}

#[async_trait]
impl CouponRepository for PgUnit {
    async fn insert(&mut self, new: NewCoupon) -> R<Coupon> {
        sqlx::query_as!(
            CouponRow,
            "INSERT INTO coupons (name, kind, discount_type, discount_value, max_discount,
                 min_order_amount, quantity, mode, valid_from, valid_until, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, statement_timestamp(), statement_timestamp())
             RETURNING id, name, kind, discount_type, discount_value, max_discount,
                       min_order_amount, quantity, mode, valid_from, valid_until, issued",
            &new.name,
            new.kind.as_str(),
            new.discount.type_str(),
            new.discount.value(),
            new.discount.cap().map(|m| m.won()),
            new.min_order_amount.won(),
            i32::try_from(new.quantity).unwrap_or(i32::MAX),
            new.mode.as_str(),
            new.valid_from.map(at),
            new.valid_until.map(at),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?
        .into_coupon()
    }

    async fn get(&mut self, cid: CouponId) -> R<Option<Coupon>> {
        sqlx::query_as!(
            CouponRow,
            "SELECT id, name, kind, discount_type, discount_value, max_discount,
                    min_order_amount, quantity, mode, valid_from, valid_until, issued
             FROM coupons WHERE id = $1",
            cid.get(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(CouponRow::into_coupon)
        .transpose()
    }

    async fn list(&mut self) -> R<Vec<Coupon>> {
        sqlx::query_as!(
            CouponRow,
            "SELECT id, name, kind, discount_type, discount_value, max_discount,
                    min_order_amount, quantity, mode, valid_from, valid_until, issued
             FROM coupons ORDER BY id",
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(CouponRow::into_coupon)
        .collect()
    }

    async fn page(
        &mut self,
        issuable_at: Option<Timestamp>,
        after: Option<CouponId>,
        max: usize,
    ) -> R<Vec<(Coupon, u32)>> {
        sqlx::query_as!(
            CouponRow,
            "SELECT id, name, kind, discount_type, discount_value, max_discount,
                    min_order_amount, quantity, mode, valid_from, valid_until, issued
             FROM coupons
             WHERE id > $1 AND ($2::timestamptz IS NULL OR (
                 (valid_from IS NULL OR valid_from <= $2)
                 AND (valid_until IS NULL OR valid_until > $2)
                 AND issued < quantity))
             ORDER BY id LIMIT $3",
            after.map_or(0, CouponId::get),
            issuable_at.map(at),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(CouponRow::into_pair)
        .collect()
    }

    async fn issue(&mut self, c: &Coupon, user: UserId, now: Timestamp) -> R<UserCoupon> {
        let row = sqlx::query_as!(
            UserCouponRow,
            "INSERT INTO user_coupons (coupon_id, user_id, status, issued_at, expires_at, created_at, updated_at)
             VALUES ($1, $2, 'ISSUED', $3, $4, $3, $3)
             ON CONFLICT (coupon_id, user_id) DO NOTHING
             RETURNING id, coupon_id, user_id, status, order_id, issued_at, expires_at",
            c.id.get(),
            user.get(),
            at(now),
            at(c.expiry_for(now)),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        let Some(row) = row else {
            return Err(DomainError::CouponAlreadyIssued.into());
        };
        let counted = sqlx::query!(
            "UPDATE coupons SET issued = issued + 1, updated_at = statement_timestamp()
             WHERE id = $1 AND issued < quantity",
            c.id.get(),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if counted.rows_affected() == 0 {
            // The caller drops the unit, which also removes the row inserted above.
            return Err(DomainError::CouponSoldOut.into());
        }
        sqlx::query!(
            "DELETE FROM failed_issuances WHERE coupon_id = $1 AND user_id = $2",
            c.id.get(),
            user.get(),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        row.into_user_coupon()
    }

    /// One statement for the whole batch: the rows go in (in user order, so that two batches
    /// holding the same users never wait on each other in a cycle), the coupon's count moves
    /// by the number that went in, if that stays within the quantity, and those users'
    /// failures are cleared.
    async fn issue_batch(&mut self, c: &Coupon, claims: &[(UserId, Timestamp)]) -> R<u32> {
        let mut sorted: Vec<(UserId, Timestamp)> = claims.to_vec();
        sorted.sort_by_key(|(u, _)| *u);
        sorted.dedup_by_key(|(u, _)| *u);
        if sorted.is_empty() {
            return Ok(0);
        }
        let users: Vec<i64> = sorted.iter().map(|(u, _)| u.get()).collect();
        let issued_at: Vec<OffsetDateTime> = sorted.iter().map(|(_, t)| at(*t)).collect();
        let expires_at: Vec<OffsetDateTime> =
            sorted.iter().map(|(_, t)| at(c.expiry_for(*t))).collect();
        let row = sqlx::query!(
            r#"WITH claim AS (
                 SELECT * FROM unnest($2::bigint[], $3::timestamptz[], $4::timestamptz[])
                     AS c (user_id, issued_at, expires_at)
             ), issued AS (
                 INSERT INTO user_coupons
                     (coupon_id, user_id, status, issued_at, expires_at, created_at, updated_at)
                 SELECT $1, user_id, 'ISSUED', issued_at, expires_at, issued_at, issued_at
                 FROM claim ORDER BY user_id
                 ON CONFLICT (coupon_id, user_id) DO NOTHING
                 RETURNING user_id
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
             SELECT (SELECT count(*) FROM issued) AS "issued!",
                    (SELECT count(*) FROM counted) AS "counted!""#,
            c.id.get(),
            &users as &[i64],
            &issued_at as &[OffsetDateTime],
            &expires_at as &[OffsetDateTime],
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?;
        if row.issued > 0 && row.counted == 0 {
            // The caller drops the unit, which also removes the rows inserted above.
            return Err(DomainError::CouponSoldOut.into());
        }
        Ok(u32_of(row.issued))
    }

    async fn issue_each(
        &mut self,
        c: &Coupon,
        users: &[UserId],
        now: Timestamp,
    ) -> R<Vec<Result<UserCoupon, DomainError>>> {
        crate::batch::issue_each(&mut self.tx, c, users, now).await
    }

    async fn get_user_coupon(&mut self, ucid: UserCouponId) -> R<Option<UserCoupon>> {
        sqlx::query_as!(
            UserCouponRow,
            "SELECT id, coupon_id, user_id, status, order_id, issued_at, expires_at
             FROM user_coupons WHERE id = $1",
            ucid.get(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(UserCouponRow::into_user_coupon)
        .transpose()
    }

    async fn user_coupons(&mut self, user: UserId) -> R<Vec<UserCoupon>> {
        sqlx::query_as!(
            UserCouponRow,
            "SELECT id, coupon_id, user_id, status, order_id, issued_at, expires_at
             FROM user_coupons WHERE user_id = $1 ORDER BY id",
            user.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(UserCouponRow::into_user_coupon)
        .collect()
    }

    async fn user_coupons_page(
        &mut self,
        user: UserId,
        after: Option<UserCouponId>,
        max: usize,
    ) -> R<Vec<UserCoupon>> {
        sqlx::query_as!(
            UserCouponRow,
            "SELECT id, coupon_id, user_id, status, order_id, issued_at, expires_at
             FROM user_coupons WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            user.get(),
            after.map_or(0, UserCouponId::get),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(UserCouponRow::into_user_coupon)
        .collect()
    }

    async fn issued_count(&mut self, cid: CouponId) -> R<u32> {
        let n = sqlx::query_scalar!("SELECT issued FROM coupons WHERE id = $1", cid.get())
            .fetch_optional(&mut *self.tx)
            .await
            .map_err(e)?;
        Ok(u32_of(i64::from(n.unwrap_or(0))))
    }

    async fn holders(&mut self, cid: CouponId) -> R<Vec<UserId>> {
        sqlx::query_scalar!(
            "SELECT user_id FROM user_coupons WHERE coupon_id = $1 ORDER BY id",
            cid.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|u| id(u, UserId::new))
        .collect()
    }

    async fn set_state(
        &mut self,
        ucid: UserCouponId,
        from: UserCouponStatus,
        to: UserCouponStatus,
        order: Option<OrderId>,
    ) -> R<bool> {
        let done = sqlx::query!(
            "UPDATE user_coupons SET status = $3, order_id = $4, updated_at = statement_timestamp()
             WHERE id = $1 AND status = $2",
            ucid.get(),
            from.as_str(),
            to.as_str(),
            order.map(|o| o.get()),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record_failure(
        &mut self,
        cid: CouponId,
        user: UserId,
        reason: &str,
        now: Timestamp,
    ) -> R<()> {
        sqlx::query!(
            "INSERT INTO failed_issuances (coupon_id, user_id, reason, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (coupon_id, user_id) DO UPDATE
                 SET reason = EXCLUDED.reason, updated_at = EXCLUDED.updated_at,
                     attempts = failed_issuances.attempts + 1",
            cid.get(),
            user.get(),
            reason,
            at(now),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(())
    }

    async fn clear_failure(&mut self, cid: CouponId, user: UserId) -> R<bool> {
        let done = sqlx::query!(
            "DELETE FROM failed_issuances WHERE coupon_id = $1 AND user_id = $2",
            cid.get(),
            user.get(),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        Ok(done.rows_affected() == 1)
    }

    async fn failures(&mut self, cid: CouponId) -> R<Vec<UserId>> {
        sqlx::query_scalar!(
            "SELECT user_id FROM failed_issuances WHERE coupon_id = $1 ORDER BY user_id",
            cid.get(),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|u| id(u, UserId::new))
        .collect()
    }

    async fn failure_records(
        &mut self,
        cid: CouponId,
        after: Option<UserId>,
        limit: usize,
    ) -> R<Vec<IssuanceFailure>> {
        // User ids are positive, so 0 is before every one of them.
        let after = after.map_or(0, UserId::get);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        sqlx::query!(
            "SELECT user_id, reason, attempts, updated_at FROM failed_issuances
             WHERE coupon_id = $1 AND user_id > $2
             ORDER BY user_id LIMIT $3",
            cid.get(),
            after,
            limit,
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(|r| {
            Ok(IssuanceFailure {
                user_id: id(r.user_id, UserId::new)?,
                reason: r.reason,
                attempts: u32_of(i64::from(r.attempts)),
                failed_at: ts(r.updated_at),
            })
        })
        .collect()
    }
}
