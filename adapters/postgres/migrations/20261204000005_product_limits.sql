-- Per-customer purchase limits (API v1.1): a product may cap the units one customer's live
-- orders (not CANCELLED, EXPIRED or PAYMENT_FAILED) hold together; NULL is no limit.
ALTER TABLE products
    ADD COLUMN max_per_customer INTEGER NULL CHECK (max_per_customer > 0);

-- (Each index IF NOT EXISTS: on a large database they can be built beforehand with CREATE
-- INDEX CONCURRENTLY, see docs/operations.md, "Upgrading".)
-- A user's orders, newest first (listing), and the start of the per-customer count.
CREATE INDEX IF NOT EXISTS orders_user_idx ON orders (user_id, id);

-- The per-customer count reads the lines of one product in a user's orders: from the product
-- side, with the quantity in the index.
CREATE INDEX IF NOT EXISTS order_lines_product_idx ON order_lines (product_id, order_id) INCLUDE (quantity);
