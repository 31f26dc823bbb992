//! Where the API reads its collections: the search engine (production) or the local backend
//! (the GeoParquet archive plus the live layer, for the standalone mode). Handlers only see
//! [`Store`], so both answer through the same parameter checks, paging and shaping.

use std::sync::Arc;

use serde_json::Value;

use crate::local::LocalStore;
use crate::problem::ApiError;
use crate::query::{self, Collection, Filters};
use crate::search::Search;
use crate::shape::{self, Page};
use geostream_model::{Naming, TenantId};

/// The backend of one API process.
#[derive(Debug, Clone)]
pub enum Store {
    /// Elasticsearch or OpenSearch: the sink's indices.
    Search {
        /// The client.
        search: Search,
        /// Index naming.
        naming: Naming,
        /// The tenant (indices are per tenant).
        tenant: TenantId,
    },
    /// The archive and the live layer.
    Local(Arc<LocalStore>),
}

impl Store {
    /// `size` items of `c` after the cursor `after`, in the collection's order.
    pub async fn page(
        &self,
        c: Collection,
        filters: &Filters,
        size: usize,
        after: Option<&[Value]>,
        count_total: bool,
    ) -> Result<Page, ApiError> {
        match self {
            Store::Search { search, naming, tenant } => {
                let body = query::page(c, filters, size, after, count_total);
                let answer = search.search(&c.index(naming, tenant), &body).await?;
                shape::page(&answer)
            }
            Store::Local(local) => local.page(c, filters, size, after, count_total).await,
        }
    }

    /// One item by its feature id (for `latest` also by track).
    pub async fn by_id(&self, c: Collection, id: &str) -> Result<Option<Value>, ApiError> {
        match self {
            Store::Search { search, naming, tenant } => {
                let answer = search.search(&c.index(naming, tenant), &query::by_id(id)).await?;
                Ok(shape::page(&answer)?.features.into_iter().next())
            }
            Store::Local(local) => local.by_id(c, id).await,
        }
    }

    /// Per feed: observations stored, arrived since `since`, newest arrival and event time.
    pub async fn feed_status(
        &self,
        since: geostream_model::time::OffsetDateTime,
    ) -> Result<Vec<crate::feed_status::FeedStatus>, ApiError> {
        match self {
            Store::Search { search, naming, tenant } => {
                let index = Collection::Observations.index(naming, tenant);
                let answer = search.search(&index, &crate::feed_status::query(since)).await?;
                crate::feed_status::read(&answer)
            }
            Store::Local(local) => local.feed_status(since).await,
        }
    }

    /// Whether the backend answers (readiness).
    pub async fn ping(&self) -> Result<(), ApiError> {
        match self {
            Store::Search { search, .. } => search.ping().await,
            Store::Local(local) => local.ping().await,
        }
    }

    /// A short name for logs and readiness.
    pub fn name(&self) -> &'static str {
        match self {
            Store::Search { .. } => "search",
            Store::Local(_) => "archive",
        }
    }
}
