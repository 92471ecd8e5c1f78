//! ListOrders: a shopper's orders, or every order for an admin, newest first, a page at a time.

use crate::engine::Context;
use crate::error::AppError;
use crate::paging::{Page, PageRequest};
use crate::ports::store::OrderFilter;
use crate::views::OrderView;
use stockade_domain::OrderId;

/// A page of the orders `filter` selects (a shopper's: `filter.user` set to theirs), newest
/// first.
///
/// # Errors
/// `INVALID_INPUT` for a cursor that names no order id; `BACKEND_UNAVAILABLE`.
pub(crate) async fn execute(
    ctx: &Context,
    filter: OrderFilter,
    page: PageRequest,
) -> Result<Page<OrderView>, AppError> {
    let before = page.cursor().map(OrderId::new).transpose()?;
    let mut uow = ctx.ports.store.begin().await?;
    let orders = uow.orders().page(filter, before, page.fetch()).await?;
    Ok(page
        .cut(orders, |o| o.id.get())
        .map(|o| OrderView::from(&o)))
}
