-- How many times a FLASH issuance of one (coupon, user) ended in the dead-letter queue or was
-- replayed without success (API "GET /api/v1/admin/coupons/{id}/failures"): the first failure
-- counts 1, each failure recorded again for the pair adds one. `updated_at` is the last one.
ALTER TABLE failed_issuances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
