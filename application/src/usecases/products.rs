//! Product listing and the admin's product management.

use crate::ports::lock::keys;
use crate::views::ProductView;
use crate::{AppError, Stockade};
use stockade_domain::{DomainError, NewProduct, ProductId};

impl Stockade {
    /// Every product, by id.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn products(&self) -> Result<Vec<ProductView>, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let mut products = uow.products().list().await?;
        products.sort_by_key(|p| p.id);
        Ok(products.iter().map(ProductView::from).collect())
    }

    /// # Errors
    /// `PRODUCT_NOT_FOUND`; `BACKEND_UNAVAILABLE`.
    pub async fn product(&self, id: ProductId) -> Result<ProductView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let product = uow
            .products()
            .get(id)
            .await?
            .ok_or(DomainError::ProductNotFound(id.get()))?;
        Ok(ProductView::from(&product))
    }

    /// Admin: adds a product.
    ///
    /// # Errors
    /// `BACKEND_UNAVAILABLE`.
    pub async fn create_product(&self, new: NewProduct) -> Result<ProductView, AppError> {
        let mut uow = self.core.ports.store.begin().await?;
        let product = uow.products().insert(new).await?;
        uow.commit().await?;
        Ok(ProductView::from(&product))
    }

    /// Admin: sets a product's stock level, under the product's lock so no order deducts from a
    /// level about to be overwritten.
    ///
    /// # Errors
    /// `PRODUCT_NOT_FOUND`; `LOCK_TIMEOUT`; `BACKEND_UNAVAILABLE`.
    pub async fn set_stock(&self, id: ProductId, stock: u32) -> Result<ProductView, AppError> {
        let mut guard = self.enter(&[keys::stock(id)]).await?;
        let uow = guard.begin().await?;
        let product = uow
            .products()
            .set_stock(id, stock)
            .await?
            .ok_or(DomainError::ProductNotFound(id.get()))?;
        guard.finish().await?;
        self.restocked(vec![id]).await;
        Ok(ProductView::from(&product))
    }
}
