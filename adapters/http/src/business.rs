//! Business counters: what the shop sold, as the API answered it. Replayed answers are not
//! counted again. Each counter's handle is looked up once (the recorder is installed before
//! the router serves).

use metrics::Counter;
use std::sync::OnceLock;

macro_rules! counter_once {
    ($fn:ident, $name:literal $(, $k:literal => $v:literal)*) => {
        pub fn $fn() -> &'static Counter {
            static C: OnceLock<Counter> = OnceLock::new();
            C.get_or_init(|| metrics::counter!($name $(, $k => $v)*))
        }
    };
}

counter_once!(orders_created, "stockade_orders_created_total");
counter_once!(orders_paid, "stockade_orders_paid_total");
counter_once!(orders_cancelled, "stockade_orders_cancelled_total");
counter_once!(payments_failed, "stockade_payments_failed_total");
counter_once!(revenue_won, "stockade_revenue_won_total");
counter_once!(coupons_issued_locked, "stockade_coupons_issued_total", "mode" => "LOCKED");
counter_once!(coupons_reserved_flash, "stockade_coupons_issued_total", "mode" => "FLASH");
counter_once!(signups, "stockade_signups_total");
counter_once!(logins_refused_credentials, "stockade_logins_refused_total", "reason" => "invalid_credentials");
counter_once!(logins_refused_throttled, "stockade_logins_refused_total", "reason" => "throttled");

/// Describes every family above for `/metrics` (`# HELP`).
pub fn describe() {
    metrics::describe_counter!(
        "stockade_orders_created_total",
        "orders created (answered 201, replays not counted)"
    );
    metrics::describe_counter!("stockade_orders_paid_total", "orders paid");
    metrics::describe_counter!(
        "stockade_orders_cancelled_total",
        "orders cancelled by their buyer (paid ones refunded)"
    );
    metrics::describe_counter!(
        "stockade_payments_failed_total",
        "payments the data platform refused or did not answer (compensated, 502)"
    );
    metrics::describe_counter!(
        "stockade_revenue_won_total",
        "won paid for orders (refunds not subtracted)"
    );
    metrics::describe_counter!(
        "stockade_coupons_issued_total",
        "coupons issued (LOCKED) or reserved (FLASH), by mode"
    );
    metrics::describe_counter!(
        "stockade_signups_total",
        "accounts registered (answered 201)"
    );
    metrics::describe_counter!(
        "stockade_logins_refused_total",
        "sign-ins refused, by reason (invalid_credentials: 401, throttled: 429)"
    );
}
