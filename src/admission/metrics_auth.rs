//! `--metrics-auth`: `/metrics` only for callers the API server authenticates (TokenReview) and
//! authorizes for `get` on the non-resource URL (SubjectAccessReview), as controller-runtime's
//! metrics filter and kube-rbac-proxy do. Decisions are cached briefly per token (by its
//! SHA-256, never the token itself) so that a scrape every few seconds costs no API calls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::Api;
use kube::api::PostParams;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How long a decision is reused (controller-runtime's authorizer caches allows for 5 min;
/// shorter here so a revoked binding takes effect soon).
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Cached tokens at most; the cache starts over when full (a flood of bogus tokens cannot grow it).
const CACHE_MAX: usize = 1024;
/// Reviews in flight at once: a flood of bogus tokens must not flood the API server.
const MAX_REVIEWS: usize = 4;
/// Deadline of one TokenReview + SubjectAccessReview.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Allowed,
    Unauthenticated,
    Forbidden,
}

struct Inner {
    client: kube::Client,
    path: &'static str,
    cache: Mutex<HashMap<[u8; 32], (Instant, Verdict)>>,
    reviews: Semaphore,
}

/// Authentication and authorization of `/metrics` scrapes. Cheap to clone.
#[derive(Clone)]
pub struct MetricsAuth(Arc<Inner>);

impl MetricsAuth {
    /// Guards the non-resource URL `path` with `client`'s TokenReview and SubjectAccessReview.
    pub fn new(client: kube::Client, path: &'static str) -> Self {
        Self(Arc::new(Inner {
            client,
            path,
            cache: Mutex::default(),
            reviews: Semaphore::new(MAX_REVIEWS),
        }))
    }

    /// `None` when the request may be served; otherwise the 401/403/503 to answer.
    pub async fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        let Some(token) = bearer(headers) else {
            return refusal(Verdict::Unauthenticated);
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(verdict) = self.cached(&key) {
            return refusal(verdict);
        }
        let review = async {
            let _permit = self.0.reviews.acquire().await;
            self.review(token).await
        };
        match tokio::time::timeout(REVIEW_TIMEOUT, review).await {
            Ok(Ok(verdict)) => {
                self.remember(key, verdict);
                refusal(verdict)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "metrics authorization: review failed");
                Some(unavailable())
            }
            Err(_) => {
                tracing::warn!("metrics authorization: review timed out");
                Some(unavailable())
            }
        }
    }

    fn cached(&self, key: &[u8; 32]) -> Option<Verdict> {
        let cache = self.0.cache.lock().unwrap_or_else(PoisonError::into_inner);
        cache
            .get(key)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, verdict)| *verdict)
    }

    fn remember(&self, key: [u8; 32], verdict: Verdict) {
        let mut cache = self.0.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(key, (Instant::now(), verdict));
    }

    async fn review(&self, token: &str) -> Result<Verdict, kube::Error> {
        let client = &self.0.client;
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: token.to_string(),
                audiences: None,
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let Some(user) = status.user.filter(|_| status.authenticated == Some(true)) else {
            return Ok(Verdict::Unauthenticated);
        };
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                uid: user.uid,
                groups: user.groups,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(self.0.path.to_string()),
                    verb: Some("get".to_string()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let decided = Api::<SubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(match decided.status.map(|s| s.allowed) {
            Some(true) => Verdict::Allowed,
            _ => Verdict::Forbidden,
        })
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn refusal(verdict: Verdict) -> Option<Response> {
    match verdict {
        Verdict::Allowed => None,
        Verdict::Unauthenticated => Some(
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "Unauthorized\n",
            )
                .into_response(),
        ),
        Verdict::Forbidden => Some((StatusCode::FORBIDDEN, "Forbidden\n").into_response()),
    }
}

fn unavailable() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "metrics authorization unavailable\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bearer_token_counts() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
