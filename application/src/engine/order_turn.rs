//! The create-order engine: requests for one set of products combined into turns
//! (docs/decisions/0012). `usecases::create_order` hands its requests to [`submit`].
//!
//! A turn takes the stock locks of its product set once, opens one unit of work, plans every
//! order of the batch in arrival order against the turn's running state (stock left, coupons
//! used), writes the orders that passed with one call per repository, records the idempotency
//! outcomes in the same unit, commits once and releases. Each request gets its own answer:
//! - a refusal by a business rule (`INSUFFICIENT_STOCK`, `INVALID_COUPON`, ...) answers that
//!   request alone and writes nothing for it;
//! - a backend failure (lock time-out, unavailable store, failed commit) answers every request
//!   of the turn with it, and nothing of the turn is kept;
//! - a write the store refuses although the plan allowed it (a row changed by a writer that does
//!   not take the stock lock) splits the turn: each request then runs as a turn of its own, in
//!   the batch's order, so every answer is the one serial execution gives.

use super::combine::Lost;
use super::context::{duration_ms, Context};
use super::lanes::{OrderAnswer, OrderJob, ProductSet};
use super::order_plan::{plan, write_orders, OrderRequest, OrderSource, Running};
use super::outcome::{self, Settled};
use crate::error::AppError;
use crate::ports::idempotency::{StoredOutcome, Ticket};
use crate::ports::lock::{keys, LockKey};
use crate::ports::store::{NewOrder, StoreError};
use crate::views::OrderView;
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;
use stockade_domain::{DomainError, LineRequest, ProductId, UserId};

/// How many times create-order re-reads a cart that changed between reading and locking.
const CART_RETRIES: usize = 3;

fn done(result: Result<OrderView, AppError>) -> OrderAnswer {
    OrderAnswer::Done(Settled::unrecorded(result))
}

/// How a turn ended when it did not fail as a whole.
enum Turn {
    /// Every request answered, in order.
    Answered(Vec<OrderAnswer>),
    /// The store refused a write the plan allowed (nothing of the turn was kept): run each
    /// request as a turn of its own.
    Split,
}

pub(crate) async fn submit(
    ctx: &Arc<Context>,
    cmd: OrderRequest,
    reference: Option<String>,
    ticket: Option<Ticket>,
) -> Result<Settled<OrderView>, AppError> {
    if let OrderSource::Lines(lines) = &cmd.source {
        stockade_domain::order::check_lines(lines)?;
    }
    if let Some(refusal) = refused_fast(ctx, &cmd) {
        return Err(refusal);
    }
    for _ in 0..CART_RETRIES {
        // Which products to lock: from the request, or from the cart as it is now.
        let products: BTreeSet<ProductId> = match &cmd.source {
            OrderSource::Lines(lines) => lines.iter().map(|l| l.product_id).collect(),
            OrderSource::FromCart => {
                let mut uow = ctx.ports.store.begin().await?;
                let cart = uow.carts().get(cmd.user_id).await?;
                cart.items.keys().copied().collect()
            }
        };
        if products.is_empty() {
            return Err(DomainError::CartEmpty.into());
        }
        let products: ProductSet = products.into_iter().collect();
        let job = OrderJob {
            cmd: cmd.clone(),
            products: products.clone(),
            reference: reference.clone(),
            ticket: ticket.clone(),
        };
        let lanes = Arc::clone(ctx);
        let answer = ctx
            .order_lanes
            .submit(products, job, move |jobs| {
                let ctx = lanes.clone();
                async move { place_batch(&ctx, jobs).await }
            })
            .await
            .map_err(|Lost| AppError::Internal("the order's turn failed".into()))?;
        match answer {
            OrderAnswer::CartChanged => continue,
            OrderAnswer::Done(settled) => return Ok(settled),
        }
    }
    Err(AppError::LockTimeout)
}

/// The sold-out fast path: a one-line order without coupons, for a product known to have no
/// stock, is refused as its turn would refuse it, without queueing for one.
fn refused_fast(ctx: &Context, cmd: &OrderRequest) -> Option<AppError> {
    let OrderSource::Lines(lines) = &cmd.source else {
        return None;
    };
    let [line] = lines.as_slice() else {
        return None;
    };
    if line.user_coupon_id.is_some() || !cmd.user_coupon_ids.is_empty() {
        return None;
    }
    if !ctx.sold_out.refuses(line.product_id, line.quantity.get()) {
        return None;
    }
    metrics::counter!("stockade_fast_path_refusals_total", "use_case" => "create_order")
        .increment(1);
    Some(
        DomainError::InsufficientStock {
            product: line.product_id.get(),
            requested: line.quantity.get(),
            available: 0,
        }
        .into(),
    )
}

/// Runs one batch of create-order requests (all for one product set) and answers each.
async fn place_batch(ctx: &Context, jobs: Vec<OrderJob>) -> Vec<OrderAnswer> {
    metrics::histogram!("stockade_combine_batch_size", "use_case" => "create_order")
        .record(jobs.len() as f64);
    metrics::gauge!("stockade_combine_queue_depth", "use_case" => "create_order")
        .set(ctx.order_lanes.depth() as f64);
    match ctx.retry_contention(|| turn(ctx, &jobs)).await {
        Ok(Turn::Answered(answers)) => answers,
        Err(e) => jobs.iter().map(|_| done(Err(e.shared()))).collect(),
        Ok(Turn::Split) => {
            tracing::debug!(
                batch = jobs.len(),
                "a write of the turn was refused; running its requests one by one"
            );
            let mut answers = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let one = std::slice::from_ref(job);
                let answer = match ctx.retry_contention(|| turn(ctx, one)).await {
                    Ok(Turn::Answered(mut a)) => a.pop().unwrap_or_else(|| {
                        done(Err(AppError::Internal("a turn left a request".into())))
                    }),
                    Ok(Turn::Split) => done(Err(AppError::Internal("a turn of one split".into()))),
                    Err(e) => done(Err(e)),
                };
                answers.push(answer);
            }
            answers
        }
    }
}

/// One turn: lock, plan every request against the running state, write, record, commit.
async fn turn(ctx: &Context, jobs: &[OrderJob]) -> Result<Turn, AppError> {
    let alone = jobs.len() == 1;
    let Some(first) = jobs.first() else {
        return Ok(Turn::Answered(Vec::new()));
    };
    let mut lock_keys: Vec<LockKey> = first.products.iter().map(|p| keys::stock(*p)).collect();
    for job in jobs {
        if job.cmd.source == OrderSource::FromCart {
            lock_keys.push(keys::cart(job.cmd.user_id));
        }
    }
    let generation = ctx.sold_out.generation();
    let mut guard = ctx.enter(&lock_keys).await?;
    let uow = guard.begin().await?;
    let now = ctx.ports.clock.now();

    let mut running = Running::default();
    let mut answers: Vec<Option<OrderAnswer>> = jobs.iter().map(|_| None).collect();
    let mut planned: Vec<(usize, NewOrder)> = Vec::new();
    let mut emptied: Vec<UserId> = Vec::new();
    let mut seen: HashSet<&str> = HashSet::new();
    let expires_at = now.plus_millis(duration_ms(ctx.settings.order_ttl));
    for (i, job) in jobs.iter().enumerate() {
        let user = job.cmd.user_id;
        if let Some(r) = job.reference.as_deref() {
            // An order already placed under the reference (a second execution of the
            // request) is met by the insert, which refuses the turn; run alone, the request
            // is then answered with that order.
            if !seen.insert(r) {
                answers[i] = Some(done(Err(AppError::RequestInProgress {
                    retry_after: Duration::from_secs(1),
                })));
                continue;
            }
        }
        let lines = match &job.cmd.source {
            OrderSource::Lines(lines) => lines.clone(),
            OrderSource::FromCart if emptied.contains(&user) => {
                answers[i] = Some(done(Err(DomainError::CartEmpty.into())));
                continue;
            }
            OrderSource::FromCart => {
                let cart = uow.carts().get(user).await?;
                if cart.items.keys().any(|p| !job.products.contains(p)) {
                    // The cart changed after it was read; queue again under its new set.
                    answers[i] = Some(OrderAnswer::CartChanged);
                    continue;
                }
                if cart.is_empty() {
                    answers[i] = Some(done(Err(DomainError::CartEmpty.into())));
                    continue;
                }
                cart.items
                    .iter()
                    .map(|(p, q)| LineRequest {
                        product_id: *p,
                        quantity: *q,
                        user_coupon_id: None,
                    })
                    .collect()
            }
        };
        let planning = plan(&mut *uow, &mut running, &job.cmd, lines, now).await;
        match planning {
            Ok(pricing) => {
                if job.cmd.source == OrderSource::FromCart {
                    emptied.push(user);
                }
                planned.push((
                    i,
                    NewOrder {
                        user_id: user,
                        pricing,
                        created_at: now,
                        expires_at,
                        reference: job.reference.clone(),
                    },
                ));
            }
            Err(e) if e.is_business_outcome() => answers[i] = Some(done(Err(e))),
            Err(e) => return Err(e),
        }
    }

    let news: Vec<NewOrder> = planned.iter().map(|(_, n)| n.clone()).collect();
    let orders = match write_orders(&mut *uow, news, &emptied).await {
        Ok(orders) => orders,
        Err(StoreError::Rejected(_) | StoreError::Conflict(_)) if !alone => return Ok(Turn::Split),
        Err(StoreError::Rejected(d)) => {
            // Serial execution meets the same refusal: the request's own answer.
            guard.leave().await;
            return Ok(Turn::Answered(vec![done(Err(d.into()))]));
        }
        Err(StoreError::Conflict(_)) => {
            // Placed meanwhile under the same reference (a second execution of the request
            // whose record was taken over): answer with that order.
            guard.leave().await;
            return Ok(Turn::Answered(vec![done(placed_order(ctx, first).await)]));
        }
        Err(e) => return Err(e.into()),
    };
    for ((i, _), order) in planned.iter().zip(&orders) {
        answers[*i] = Some(done(Ok(OrderView::from(order))));
    }

    // Keyed outcomes commit with the turn when the idempotency store lives in the store.
    let mut outcomes: Vec<(Ticket, StoredOutcome)> = Vec::new();
    let mut recorded: Vec<usize> = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        if let (Some(ticket), Some(OrderAnswer::Done(settled))) = (&job.ticket, &answers[i]) {
            if let Some(outcome) = outcome::outcome_of(&settled.result) {
                outcomes.push((ticket.clone(), outcome));
                recorded.push(i);
            }
        }
    }
    match guard.finish_recording(&outcomes).await? {
        Ok(true) => {}
        Ok(false) => recorded.clear(),
        Err(StoreError::TicketLost) if !alone => return Ok(Turn::Split),
        Err(e) => return Err(e.into()),
    }
    for p in running.products.values().filter(|p| p.stock == 0) {
        ctx.sold_out.mark(p.id, p.max_per_order, generation);
    }
    for i in recorded {
        if let Some(OrderAnswer::Done(settled)) = &mut answers[i] {
            settled.recorded = true;
        }
    }
    Ok(Turn::Answered(
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| done(Err(AppError::Internal("unanswered".into())))))
            .collect(),
    ))
}

/// The order placed under `job`'s reference, read in a unit of its own.
async fn placed_order(ctx: &Context, job: &OrderJob) -> Result<OrderView, AppError> {
    let Some(reference) = job.reference.as_deref() else {
        return Err(AppError::Internal("order reference without order".into()));
    };
    let mut uow = ctx.ports.store.begin().await?;
    uow.orders()
        .find_by_reference(reference)
        .await?
        .map(|o| OrderView::from(&o))
        .ok_or_else(|| AppError::Internal("order reference without order".into()))
}
