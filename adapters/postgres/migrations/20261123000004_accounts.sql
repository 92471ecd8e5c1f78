-- Accounts (API "Accounts"): one per email, the email kept normalised (trimmed, lower-case) by
-- the application and unique here, the last line behind the sign-up lock. Registered users get
-- ids from their own sequence, starting above every demo user (1..=500, 1000), see
-- docs/decisions/0022.
CREATE SEQUENCE account_ids START WITH 1000001;

CREATE TABLE accounts (
    user_id BIGINT PRIMARY KEY DEFAULT nextval('account_ids'),
    email TEXT NOT NULL CONSTRAINT accounts_email_unique UNIQUE,
    name TEXT NOT NULL,
    -- An argon2id PHC string; never the password.
    password_hash TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

ALTER SEQUENCE account_ids OWNED BY accounts.user_id;

-- Failed sign-ins, one row each, read per email over the last window; every instance on the
-- database shares them.
CREATE TABLE login_failures (
    email TEXT NOT NULL,
    failed_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX login_failures_email_time ON login_failures (email, failed_at);
