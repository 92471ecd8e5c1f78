-- Lists are read a page at a time by key (no OFFSET): each needs an index that walks its order.
-- Products, coupons and failed issuances walk their primary keys; the ledger and a user's
-- coupons have (user_id, id) already; a user's orders have (user_id, id) from the product
-- limits migration. The admin's order list filtered by state walks this one.
CREATE INDEX IF NOT EXISTS orders_status_idx ON orders (status, id);
