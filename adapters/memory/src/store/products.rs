//! Products and their stock. Stock changes go through the domain's `Product::deduct` /
//! `Product::restore`, so the memory store refuses exactly what the domain refuses.

use super::MemoryUnit;
use async_trait::async_trait;
use std::ops::Bound;
use stockade_application::ports::store::{ProductRepository, StoreError};
use stockade_domain::{DomainError, NewProduct, Product, ProductChanges, ProductId, Quantity};

impl MemoryUnit {
    fn put_product(&mut self, product: Product) {
        let id = product.id;
        let previous = self.state.products.insert(id, product);
        self.on_rollback(move |s| match previous {
            Some(p) => {
                s.products.insert(id, p);
            }
            None => {
                s.products.remove(&id);
            }
        });
    }
}

fn product_not_found(id: ProductId) -> StoreError {
    StoreError::Rejected(DomainError::ProductNotFound(id.get()))
}

#[async_trait]
impl ProductRepository for MemoryUnit {
    async fn get(&mut self, id: ProductId) -> Result<Option<Product>, StoreError> {
        self.op()?;
        Ok(self.state.products.get(&id).cloned())
    }

    async fn list(&mut self) -> Result<Vec<Product>, StoreError> {
        self.op()?;
        Ok(self.state.products.values().cloned().collect())
    }

    async fn page(
        &mut self,
        after: Option<ProductId>,
        limit: usize,
    ) -> Result<Vec<Product>, StoreError> {
        self.op()?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        Ok(self
            .state
            .products
            .range((from, Bound::Unbounded))
            .take(limit)
            .map(|(_, p)| p.clone())
            .collect())
    }

    async fn insert(&mut self, new: NewProduct) -> Result<Product, StoreError> {
        self.op()?;
        let id = ProductId::new(self.state.next_id("product"))?;
        let product = Product {
            id,
            name: new.name,
            price: new.price,
            stock: new.stock,
            max_per_order: new.max_per_order,
            max_per_customer: new.max_per_customer,
        };
        self.put_product(product.clone());
        Ok(product)
    }

    async fn set_stock(
        &mut self,
        id: ProductId,
        stock: u32,
    ) -> Result<Option<Product>, StoreError> {
        self.op()?;
        let Some(mut product) = self.state.products.get(&id).cloned() else {
            return Ok(None);
        };
        product.stock = stock;
        self.put_product(product.clone());
        Ok(Some(product))
    }

    async fn update(
        &mut self,
        id: ProductId,
        changes: &ProductChanges,
    ) -> Result<Option<Product>, StoreError> {
        self.op()?;
        let Some(mut product) = self.state.products.get(&id).cloned() else {
            return Ok(None);
        };
        product.apply(changes);
        self.put_product(product.clone());
        Ok(Some(product))
    }

    async fn deduct_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError> {
        self.op()?;
        let mut product = self
            .state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| product_not_found(id))?;
        product.deduct(quantity)?;
        self.put_product(product);
        Ok(())
    }

    async fn restore_stock(&mut self, id: ProductId, quantity: Quantity) -> Result<(), StoreError> {
        self.op()?;
        let mut product = self
            .state
            .products
            .get(&id)
            .cloned()
            .ok_or_else(|| product_not_found(id))?;
        product.restore(quantity);
        self.put_product(product);
        Ok(())
    }
}
