//! Products and their stock.

use super::{e, limit, PgUnit, R};
use crate::convert::{id, money, u32_of};
use async_trait::async_trait;
use stockade_application::ports::store::ProductRepository;
use stockade_domain::{DomainError, NewProduct, Product, ProductChanges, ProductId, Quantity};

/// A row of `products`, as the store reads it.
#[derive(Debug, sqlx::FromRow)]
struct ProductRow {
    id: i64,
    name: String,
    price: i64,
    stock: i64,
    max_per_order: i32,
    max_per_customer: Option<i32>,
}

impl ProductRow {
    fn into_product(self) -> R<Product> {
        Ok(Product {
            id: id(self.id, ProductId::new)?,
            name: self.name,
            price: money(self.price),
            stock: u32_of(self.stock),
            max_per_order: u32_of(i64::from(self.max_per_order)),
            max_per_customer: self.max_per_customer.map(|m| u32_of(i64::from(m))),
        })
    }
}

/// A limit as its `INTEGER` column holds it (the domain keeps limits far below `i32::MAX`).
fn limit_column(max: u32) -> i32 {
    i32::try_from(max).unwrap_or(i32::MAX)
}

#[async_trait]
impl ProductRepository for PgUnit {
    async fn get(&mut self, pid: ProductId) -> R<Option<Product>> {
        sqlx::query_as!(
            ProductRow,
            "SELECT id, name, price, stock, max_per_order, max_per_customer
             FROM products WHERE id = $1 AND state = 'ACTIVE'",
            pid.get(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(ProductRow::into_product)
        .transpose()
    }

    async fn list(&mut self) -> R<Vec<Product>> {
        sqlx::query_as!(
            ProductRow,
            "SELECT id, name, price, stock, max_per_order, max_per_customer
             FROM products WHERE state = 'ACTIVE' ORDER BY id",
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(ProductRow::into_product)
        .collect()
    }

    async fn page(&mut self, after: Option<ProductId>, max: usize) -> R<Vec<Product>> {
        sqlx::query_as!(
            ProductRow,
            "SELECT id, name, price, stock, max_per_order, max_per_customer
             FROM products WHERE state = 'ACTIVE' AND id > $1 ORDER BY id LIMIT $2",
            after.map_or(0, ProductId::get),
            limit(max),
        )
        .fetch_all(&mut *self.tx)
        .await
        .map_err(e)?
        .into_iter()
        .map(ProductRow::into_product)
        .collect()
    }

    async fn insert(&mut self, new: NewProduct) -> R<Product> {
        sqlx::query_as!(
            ProductRow,
            "INSERT INTO products (name, price, stock, max_per_order, max_per_customer,
                                   created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, statement_timestamp(), statement_timestamp())
             RETURNING id, name, price, stock, max_per_order, max_per_customer",
            &new.name,
            new.price.won(),
            i64::from(new.stock),
            limit_column(new.max_per_order),
            new.max_per_customer.map(limit_column),
        )
        .fetch_one(&mut *self.tx)
        .await
        .map_err(e)?
        .into_product()
    }

    async fn set_stock(&mut self, pid: ProductId, stock: u32) -> R<Option<Product>> {
        sqlx::query_as!(
            ProductRow,
            "UPDATE products SET stock = $2, updated_at = statement_timestamp()
             WHERE id = $1 AND state = 'ACTIVE'
             RETURNING id, name, price, stock, max_per_order, max_per_customer",
            pid.get(),
            i64::from(stock),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(ProductRow::into_product)
        .transpose()
    }

    async fn update(&mut self, pid: ProductId, changes: &ProductChanges) -> R<Option<Product>> {
        // `$5` says whether `max_per_customer` is given at all: `$6` may be NULL either way.
        sqlx::query_as!(
            ProductRow,
            "UPDATE products SET
                 name = COALESCE($2, name),
                 price = COALESCE($3, price),
                 max_per_order = COALESCE($4, max_per_order),
                 max_per_customer = CASE WHEN $5 THEN $6 ELSE max_per_customer END,
                 updated_at = statement_timestamp()
             WHERE id = $1 AND state = 'ACTIVE'
             RETURNING id, name, price, stock, max_per_order, max_per_customer",
            pid.get(),
            changes.name.as_deref(),
            changes.price.map(|p| p.won()),
            changes.max_per_order.map(limit_column),
            changes.max_per_customer.is_some(),
            changes.max_per_customer.flatten().map(limit_column),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?
        .map(ProductRow::into_product)
        .transpose()
    }

    async fn deduct_stock(&mut self, pid: ProductId, quantity: Quantity) -> R<()> {
        let done = sqlx::query!(
            "UPDATE products SET stock = stock - $2, updated_at = statement_timestamp()
             WHERE id = $1 AND state = 'ACTIVE' AND stock >= $2",
            pid.get(),
            i64::from(quantity.get()),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if done.rows_affected() == 1 {
            return Ok(());
        }
        let left = sqlx::query_scalar!(
            "SELECT stock FROM products WHERE id = $1 AND state = 'ACTIVE'",
            pid.get(),
        )
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(e)?;
        Err(match left {
            None => DomainError::ProductNotFound(pid.get()).into(),
            Some(available) => DomainError::InsufficientStock {
                product: pid.get(),
                requested: quantity.get(),
                available: u32_of(available),
            }
            .into(),
        })
    }

    async fn restore_stock(&mut self, pid: ProductId, quantity: Quantity) -> R<()> {
        let done = sqlx::query!(
            "UPDATE products SET stock = stock + $2, updated_at = statement_timestamp() WHERE id = $1",
            pid.get(),
            i64::from(quantity.get()),
        )
        .execute(&mut *self.tx)
        .await
        .map_err(e)?;
        if done.rows_affected() == 0 {
            return Err(DomainError::ProductNotFound(pid.get()).into());
        }
        Ok(())
    }
}
