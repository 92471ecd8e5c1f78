//! FLASH coupon gates: their configuration from a policy, and their rebuild from the store
//! when their backend lost them.

use super::context::Context;
use crate::error::AppError;
use crate::ports::gate::GateConfig;
use stockade_domain::{Coupon, UserId};

/// The gate's view of a coupon policy.
pub(crate) fn gate_config(coupon: &Coupon) -> GateConfig {
    GateConfig {
        quantity: coupon.quantity,
        valid_from: coupon.valid_from,
        valid_until: coupon.valid_until,
    }
}

/// Makes sure the gate of a FLASH coupon exists. A gate its backend lost (a restart without
/// persistence) is created again with every holder the store knows already in it, in one
/// atomic step, so no reserve can take a place a holder still has. One rebuild at a time per
/// process and coupon: requests that find the gate gone while it is being rebuilt wait for
/// that rebuild instead of each reading the store; across processes the gate's own
/// create-unless-exists decides.
///
/// # Errors
/// `BACKEND_UNAVAILABLE`.
pub(crate) async fn init_gate(ctx: &Context, coupon: &Coupon) -> Result<(), AppError> {
    let flight = ctx.rebuilds.lock().entry(coupon.id).or_default().clone();
    let _one_at_a_time = flight.lock().await;
    if ctx.ports.gate.stats(coupon.id).await?.is_some() {
        return Ok(());
    }
    let holders = {
        let mut uow = ctx.ports.store.begin().await?;
        uow.coupons().holders(coupon.id).await?
    };
    let created = ctx
        .ports
        .gate
        .rebuild(coupon.id, gate_config(coupon), &holders)
        .await?;
    if created {
        // A consumer may have persisted reservations it had in hand (read from the stream
        // before the gate was lost) between the read above and the rebuild: give them
        // their places too, before anyone else is served by this process.
        let known: std::collections::HashSet<UserId> = holders.iter().copied().collect();
        let now_held = {
            let mut uow = ctx.ports.store.begin().await?;
            uow.coupons().holders(coupon.id).await?
        };
        let mut late = 0_usize;
        for user in now_held.into_iter().filter(|u| !known.contains(u)) {
            if ctx.ports.gate.restore(coupon.id, user).await? {
                late += 1;
            }
        }
        tracing::info!(coupon = %coupon.id, holders = holders.len() + late, "coupon gate rebuilt from the store");
    }
    Ok(())
}
