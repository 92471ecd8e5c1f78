-- A payment made by a keyed pay request remembers the key: a second execution of the same
-- request (its in-flight record lost, the saga finished by recovery meanwhile) finds the
-- payment and answers with its receipt instead of refusing an order already paid.
ALTER TABLE payments ADD COLUMN idempotency_ref TEXT;
