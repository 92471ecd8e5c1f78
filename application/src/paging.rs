//! Keyset pages of a list (docs/decisions/0024).
//!
//! A list is read a page at a time: at most `limit` items after a `cursor`, the key of the last
//! item of the previous page (an id; "after" in the list's own order, so "older than" for the
//! lists that come newest first). A store answers one item more than asked when it has it, which
//! is how a page knows that more remain without counting.

use stockade_domain::DomainError;

/// What one page asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    limit: u32,
    cursor: Option<i64>,
}

impl PageRequest {
    /// The page size when none is asked for.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// The largest page.
    pub const MAX_LIMIT: u32 = 500;

    /// A page of `limit` items (default [`Self::DEFAULT_LIMIT`]) after `cursor`.
    ///
    /// # Errors
    /// `INVALID_INPUT` for a limit outside `1..=500` or a cursor that is not a positive key.
    pub fn new(limit: Option<u32>, cursor: Option<i64>) -> Result<Self, DomainError> {
        let limit = limit.unwrap_or(Self::DEFAULT_LIMIT);
        if !(1..=Self::MAX_LIMIT).contains(&limit) {
            return Err(DomainError::invalid(
                "limit",
                format!("must be 1..={}", Self::MAX_LIMIT),
            ));
        }
        if cursor.is_some_and(|c| c < 1) {
            return Err(DomainError::invalid("cursor", "not a cursor of this list"));
        }
        Ok(PageRequest { limit, cursor })
    }

    /// The first page of the largest size.
    pub const fn first(limit: u32) -> Self {
        PageRequest {
            limit,
            cursor: None,
        }
    }

    pub const fn limit(self) -> u32 {
        self.limit
    }

    /// The key the page starts after, if any.
    pub const fn cursor(self) -> Option<i64> {
        self.cursor
    }

    /// How many items to ask a store for: one more than the page, to learn whether more remain.
    pub fn fetch(self) -> usize {
        usize::try_from(self.limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
    }

    /// Cuts what a store answered for [`Self::fetch`] to the page, with the cursor of the next
    /// page when more remain (`key` names an item's key).
    pub fn cut<T>(self, mut items: Vec<T>, key: impl Fn(&T) -> i64) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if items.len() <= limit {
            return Page { items, next: None };
        }
        items.truncate(limit);
        let next = items.last().map(key);
        Page { items, next }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last one.
    pub next: Option<i64>,
}

impl<T> Page<T> {
    /// The same page with each item mapped.
    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            next: self.next,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_five_hundred_and_bad_cursors_are_refused() {
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(501), None).is_err());
        assert!(PageRequest::new(None, Some(0)).is_err());
        assert!(PageRequest::new(None, Some(-3)).is_err());
        let p = PageRequest::new(None, None).unwrap();
        assert_eq!((p.limit(), p.cursor()), (100, None));
        let p = PageRequest::new(Some(500), Some(9)).unwrap();
        assert_eq!((p.limit(), p.cursor(), p.fetch()), (500, Some(9), 501));
    }

    #[test]
    fn a_page_has_a_next_cursor_only_when_the_store_had_one_more() {
        let p = PageRequest::new(Some(2), None).unwrap();
        let full = p.cut(vec![10, 20, 30], |x| *x);
        assert_eq!(full.items, vec![10, 20]);
        assert_eq!(full.next, Some(20));
        let last = p.cut(vec![10, 20], |x| *x);
        assert_eq!(last.next, None);
        let empty = p.cut(Vec::<i64>::new(), |x| *x);
        assert_eq!((empty.items.len(), empty.next), (0, None));
    }
}
