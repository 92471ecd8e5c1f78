//! The route table, written once: each entry is a handler whose `#[utoipa::path]` states its
//! method, path, parameters, body and every answer. `utoipa_axum::routes!` registers the
//! handler under exactly that method and path and records the same operation in the document,
//! so a route cannot exist without its documentation, nor the other way round (ADR 0016).

use crate::handlers::{accounts, admin, docs, lists, ops, shop};
use crate::Shared;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Document;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// What the document says of the API as a whole; the operations come from [`routes`].
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Stockade",
        description = "A commerce backend that stays right under concurrency. Every answer is \
            the envelope `{success, data | error, timestamp}`; errors carry a stable code, listed per answer below.",
    ),
    modifiers(&Bearer),
    tags(
        (name = "ops", description = "health, readiness, metrics and this documentation"),
        (name = "accounts", description = "sign up, sign in, who am I"),
        (name = "products"), (name = "wallet"), (name = "cart"), (name = "coupons"),
        (name = "orders"), (name = "admin", description = "admin tokens only"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` scheme that signed-in operations name in `security`.
#[derive(Debug)]
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Every operation of the API, in docs/api.md's order, with the document they make.
pub(crate) fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(docs::page))
        .routes(routes!(docs::asset))
        .routes(routes!(accounts::register))
        .routes(routes!(accounts::login))
        .routes(routes!(accounts::me))
        .routes(routes!(shop::list_products))
        .routes(routes!(shop::get_product))
        .routes(routes!(shop::popular_products))
        .routes(routes!(shop::balance))
        .routes(routes!(shop::charge))
        .routes(routes!(shop::transactions))
        .routes(routes!(shop::cart))
        .routes(routes!(shop::add_to_cart))
        .routes(routes!(shop::remove_from_cart))
        .routes(routes!(shop::issue_coupon))
        .routes(routes!(lists::coupons_on_offer))
        .routes(routes!(shop::my_coupons))
        .routes(routes!(shop::create_order))
        .routes(routes!(lists::my_orders))
        .routes(routes!(shop::get_order))
        .routes(routes!(shop::pay))
        .routes(routes!(shop::cancel_order))
        .routes(routes!(admin::create_product))
        .routes(routes!(lists::all_orders))
        .routes(routes!(admin::update_product))
        .routes(routes!(admin::set_stock))
        .routes(routes!(admin::create_coupon))
        .routes(routes!(lists::all_coupons))
        .routes(routes!(admin::get_coupon))
        .routes(routes!(admin::coupon_failures))
        .routes(routes!(admin::replay_failures))
        .routes(routes!(admin::coupon_stock))
        .routes(routes!(admin::reconcile))
        .routes(routes!(admin::reset))
}

/// The path templates of [`routes`], computed once per process (the metrics middleware labels
/// its series with them, so it needs them for as long as the process runs).
pub fn paths() -> &'static [String] {
    static PATHS: OnceLock<Vec<String>> = OnceLock::new();
    PATHS.get_or_init(|| document().paths.paths.into_keys().collect())
}

/// The OpenAPI document alone (for tools and tests that do not serve it).
pub fn document() -> Document {
    routes().into_openapi()
}

#[cfg(test)]
mod tests;
