-- An order placed with an idempotency key remembers it: a second execution of the same keyed
-- request (after its in-flight record was lost or taken over) finds the first order instead of
-- placing another.
ALTER TABLE orders ADD COLUMN idempotency_ref TEXT;
CREATE UNIQUE INDEX orders_idempotency_ref_unique ON orders (idempotency_ref)
    WHERE idempotency_ref IS NOT NULL;
