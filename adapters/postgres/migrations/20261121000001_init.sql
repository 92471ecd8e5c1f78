-- Stockade's schema. Every table has created_at / updated_at; rows that users "delete" keep a
-- state column instead; every query the adapter runs has an index.

CREATE TABLE wallets (
    user_id     BIGINT PRIMARY KEY,
    balance     BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT wallets_balance_non_negative CHECK (balance >= 0)
);

CREATE TABLE ledger (
    id             BIGSERIAL PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES wallets (user_id),
    kind           TEXT NOT NULL CHECK (kind IN ('CHARGE', 'USE', 'REFUND')),
    amount         BIGINT NOT NULL CHECK (amount >= 0),
    balance_after  BIGINT NOT NULL CHECK (balance_after >= 0),
    ref_type       TEXT,
    ref_id         TEXT,
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT ledger_reference_unique UNIQUE (ref_type, ref_id, kind)
);
CREATE INDEX ledger_user_idx ON ledger (user_id, id);

CREATE TABLE products (
    id             BIGSERIAL PRIMARY KEY,
    name           TEXT NOT NULL,
    price          BIGINT NOT NULL CHECK (price > 0),
    stock          BIGINT NOT NULL,
    max_per_order  INTEGER NOT NULL CHECK (max_per_order > 0),
    state          TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'DELETED')),
    created_at     TIMESTAMPTZ NOT NULL,
    updated_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT products_stock_non_negative CHECK (stock >= 0)
);

CREATE TABLE cart_items (
    user_id     BIGINT NOT NULL,
    product_id  BIGINT NOT NULL REFERENCES products (id),
    quantity    INTEGER NOT NULL CHECK (quantity > 0),
    state       TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (state IN ('ACTIVE', 'REMOVED')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, product_id)
);

CREATE TABLE coupons (
    id                BIGSERIAL PRIMARY KEY,
    name              TEXT NOT NULL,
    kind              TEXT NOT NULL CHECK (kind IN ('CART', 'CART_ITEM')),
    discount_type     TEXT NOT NULL CHECK (discount_type IN ('FIXED', 'PERCENT')),
    discount_value    BIGINT NOT NULL,
    max_discount      BIGINT,
    min_order_amount  BIGINT NOT NULL,
    quantity          INTEGER NOT NULL CHECK (quantity > 0),
    issued            INTEGER NOT NULL DEFAULT 0,
    mode              TEXT NOT NULL CHECK (mode IN ('LOCKED', 'FLASH')),
    valid_from        TIMESTAMPTZ,
    valid_until       TIMESTAMPTZ,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    CONSTRAINT coupons_issued_within_quantity CHECK (issued >= 0 AND issued <= quantity)
);

CREATE TABLE user_coupons (
    id          BIGSERIAL PRIMARY KEY,
    coupon_id   BIGINT NOT NULL REFERENCES coupons (id),
    user_id     BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ISSUED', 'USED', 'EXPIRED')),
    order_id    BIGINT,
    issued_at   TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    CONSTRAINT user_coupons_coupon_user_unique UNIQUE (coupon_id, user_id)
);
CREATE INDEX user_coupons_user_idx ON user_coupons (user_id, id);

CREATE TABLE failed_issuances (
    coupon_id   BIGINT NOT NULL REFERENCES coupons (id),
    user_id     BIGINT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (coupon_id, user_id)
);

CREATE TABLE orders (
    id          BIGSERIAL PRIMARY KEY,
    user_id     BIGINT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('PENDING_PAYMENT', 'PAID', 'PAYMENT_FAILED', 'CANCELLED', 'EXPIRED')),
    subtotal    BIGINT NOT NULL,
    discount    BIGINT NOT NULL,
    total       BIGINT NOT NULL CHECK (total >= 0),
    expires_at  TIMESTAMPTZ NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX orders_due_idx ON orders (expires_at) WHERE status = 'PENDING_PAYMENT';
CREATE INDEX orders_paid_idx ON orders (updated_at) WHERE status = 'PAID';

CREATE TABLE order_lines (
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    line_no         INTEGER NOT NULL,
    product_id      BIGINT NOT NULL REFERENCES products (id),
    name            TEXT NOT NULL,
    unit_price      BIGINT NOT NULL,
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    line_total      BIGINT NOT NULL,
    discount        BIGINT NOT NULL,
    user_coupon_id  BIGINT REFERENCES user_coupons (id),
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE order_coupons (
    order_id        BIGINT NOT NULL REFERENCES orders (id),
    position        INTEGER NOT NULL,
    user_coupon_id  BIGINT NOT NULL REFERENCES user_coupons (id),
    discount        BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, position)
);

CREATE TABLE payments (
    id          BIGSERIAL PRIMARY KEY,
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    user_id     BIGINT NOT NULL,
    amount      BIGINT NOT NULL CHECK (amount >= 0),
    status      TEXT NOT NULL CHECK (status IN ('PENDING', 'APPROVED', 'FAILED', 'REFUNDED')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX payments_order_idx ON payments (order_id);
CREATE INDEX payments_pending_idx ON payments (created_at) WHERE status = 'PENDING';

-- The payment saga's steps: DEBITED when step 1 commits, then CONFIRMED or COMPENSATED.
CREATE TABLE saga_log (
    payment_id  BIGINT PRIMARY KEY REFERENCES payments (id),
    order_id    BIGINT NOT NULL REFERENCES orders (id),
    step        TEXT NOT NULL CHECK (step IN ('DEBITED', 'CONFIRMED', 'COMPENSATED')),
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX saga_log_open_idx ON saga_log (created_at) WHERE step = 'DEBITED';

CREATE TABLE idempotency_keys (
    scope        TEXT NOT NULL,
    key          TEXT NOT NULL,
    fingerprint  TEXT NOT NULL,
    owner        TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('IN_FLIGHT', 'DONE')),
    lease_until  TIMESTAMPTZ NOT NULL,
    ok           BOOLEAN,
    body         BYTEA,
    expires_at   TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);
CREATE INDEX idempotency_keys_expiry_idx ON idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_lease_idx ON idempotency_keys (lease_until) WHERE state = 'IN_FLIGHT';

-- Fencing: the highest token each lock key has written with, and where tokens come from.
CREATE TABLE lock_fences (
    key         TEXT PRIMARY KEY,
    token       BIGINT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE SEQUENCE lock_fencing_seq;
