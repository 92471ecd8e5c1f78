//! Carts, one per user; a user without a saved cart has an empty one.

use super::MemoryUnit;
use async_trait::async_trait;
use stockade_application::ports::store::{CartRepository, StoreError};
use stockade_domain::{Cart, UserId};

#[async_trait]
impl CartRepository for MemoryUnit {
    async fn get(&mut self, user: UserId) -> Result<Cart, StoreError> {
        self.op()?;
        Ok(self
            .state
            .carts
            .get(&user)
            .cloned()
            .unwrap_or_else(|| Cart::empty(user)))
    }

    async fn save(&mut self, cart: &Cart) -> Result<(), StoreError> {
        self.op()?;
        let user = cart.user_id;
        let previous = self.state.carts.insert(user, cart.clone());
        self.on_rollback(move |s| match previous {
            Some(c) => {
                s.carts.insert(user, c);
            }
            None => {
                s.carts.remove(&user);
            }
        });
        Ok(())
    }
}
