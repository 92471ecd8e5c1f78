-- How many times a FLASH issuance of one (coupon, user) ended in the dead-letter queue or was
-- replayed without success (API "GET /api/v1/admin/coupons/{id}/failures"): the first failure
-- counts 1, each failure recorded again for the pair adds one. `updated_at` is the last one.
ALTER TABLE failed_issuances ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;

-- Reasons are shown to admins and must be API code names, never a backend's message; failures
-- recorded before kept the message, so those read as the code they stood for.
UPDATE failed_issuances SET reason = CASE
        WHEN reason = 'the coupon is sold out' THEN 'COUPON_SOLD_OUT'
        WHEN reason LIKE 'coupon cannot be used:%' THEN 'INVALID_COUPON'
        WHEN reason LIKE 'coupon % does not exist' THEN 'COUPON_NOT_FOUND'
        ELSE 'BACKEND_UNAVAILABLE'
    END
    WHERE reason !~ '^[A-Z_]+$';
