//! ProfileSearch and ProfileSearchPart (spec §4.18): validation in table order, the index query,
//! and the per-connection result cache.

use std::sync::Arc;

use super::reject::Reject;
use crate::clock::Now;
use crate::context::View;
use crate::search::index::Hit;
use crate::search::wildcard::Wildcard;
use crate::search::{Query, regex_type};
use crate::session::{SearchCache, Session};
use crate::wire::ps::{self, single_response::ResponseType};
use crate::wire::{Status, is_valid_latitude, is_valid_longitude};

/// Spec §1.3: "no location" in search requests.
const NO_LOCATION: i32 = 0x7FFF_FFFF;
/// Spec §4.18 limits: (response, total) with thumbnails and without.
const LIMITS_WITH_THUMBNAILS: (u32, u32) = (100, 1_000);
const LIMITS_WITHOUT_THUMBNAILS: (u32, u32) = (1_000, 10_000);
const MAX_FILTER_LEN: usize = 64;
const MAX_EXTRA_DATA_FILTER_LEN: usize = 256;
/// Bytes a cached hit costs against `limits.search_cache_bytes`.
const CACHED_HIT_BYTES: usize = std::mem::size_of::<Hit>();

fn limits(thumbnails: bool) -> (u32, u32) {
    if thumbnails {
        LIMITS_WITH_THUMBNAILS
    } else {
        LIMITS_WITHOUT_THUMBNAILS
    }
}

/// Checks a ProfileSearchRequest in the order of the spec §4.18 table.
fn query(request: &ps::ProfileSearchRequest) -> Result<Query, Reject> {
    let (max_response, max_total) = limits(request.include_thumbnail_images);
    let response = request.max_response_record_count;
    if !(1..=max_response).contains(&response) || response > request.max_total_record_count {
        return Err(Reject::invalid("maxResponseRecordCount"));
    }
    if !(1..=max_total).contains(&request.max_total_record_count) {
        return Err(Reject::invalid("maxTotalRecordCount"));
    }
    if request.r#type.len() > MAX_FILTER_LEN {
        return Err(Reject::invalid("type"));
    }
    if request.name.len() > MAX_FILTER_LEN {
        return Err(Reject::invalid("name"));
    }
    let location = if request.latitude == NO_LOCATION {
        None
    } else {
        if !is_valid_latitude(request.latitude) {
            return Err(Reject::invalid("latitude"));
        }
        if !is_valid_longitude(request.longitude) {
            return Err(Reject::invalid("longitude"));
        }
        if request.radius == 0 {
            return Err(Reject::invalid("radius"));
        }
        Some((request.latitude, request.longitude, request.radius))
    };
    let extra_data = match request.extra_data.as_str() {
        "" => None,
        text if text.len() > MAX_EXTRA_DATA_FILTER_LEN => return Err(Reject::invalid("extraData")),
        text => Some(regex_type::compile(text).map_err(|_| Reject::invalid("extraData"))?),
    };
    Ok(Query {
        kind: Wildcard::new(&request.r#type),
        name: Wildcard::new(&request.name),
        location,
        extra_data,
        hosted_only: request.include_hosted_only,
        max_total: request.max_total_record_count as usize,
    })
}

/// Checks the request and runs it on the blocking pool, one search per runtime worker at a
/// time: compiling a pattern and scanning every profile can take milliseconds of CPU, which
/// must not hold up the runtime thread that serves other connections. The blocking task reads
/// only the in-memory index (the profiles are loaded from the database afterwards, in the
/// connection's own task), so shutdown need not wait for it.
async fn run_off_runtime(
    ctx: &View,
    request: ps::ProfileSearchRequest,
) -> Result<(Vec<Hit>, bool), Reject> {
    let internal = |_| Reject::status(Status::ErrorInternal);
    let slot = Arc::clone(&ctx.budgets.search_slots)
        .acquire_owned()
        .await
        .map_err(internal)?;
    let search = Arc::clone(ctx.catalog.search());
    let (found, took) = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        // A measurement for the operator's metrics, not a decision: the real clock.
        let started = std::time::Instant::now();
        let found = query(&request).map(|query| search.run(&query));
        (found, started.elapsed())
    })
    .await
    .map_err(|_| Reject::status(Status::ErrorInternal))?;
    if found.is_ok() {
        ctx.metrics.search_latency.observe(took);
    }
    found
}

/// ProfileSearchRequest: runs the query, answers the first slice, caches the rest.
pub(crate) async fn profile_search(
    ctx: &View,
    session: &mut Session,
    request: ps::ProfileSearchRequest,
    now: Now,
) -> Result<ResponseType, Reject> {
    // A new search always discards the previous results.
    session.search_cache = None;
    let limit = ctx.config.limits.searches_per_connection_per_sec;
    if session.address.is_some() && !session.searches.take(now.instant, limit) {
        return Err(Reject::status(Status::ErrorBusy));
    }
    let max_response_record_count = request.max_response_record_count;
    let thumbnails = request.include_thumbnail_images;
    let (hits, consulted_neighbors) = run_off_runtime(ctx, request).await?;
    let first = hits.len().min(max_response_record_count as usize);
    let profiles = load(ctx, &hits[..first], thumbnails).await?;
    let mut covered_servers = vec![ctx.key.network_id().0.to_vec()];
    if consulted_neighbors {
        covered_servers.extend(
            ctx.catalog
                .search()
                .neighbor_servers()
                .into_iter()
                .map(|s| s.to_vec()),
        );
    }
    let total = u32::try_from(hits.len()).unwrap_or(u32::MAX);
    if hits.len() > first {
        cache(ctx, session, hits, thumbnails, now);
    }
    Ok(ResponseType::ProfileSearch(ps::ProfileSearchResponse {
        total_record_count: total,
        max_response_record_count,
        covered_servers,
        profiles,
    }))
}

/// Keeps the results for ProfileSearchPart if the global cache budget allows.
fn cache(ctx: &View, session: &mut Session, hits: Vec<Hit>, thumbnails: bool, now: Now) {
    let bytes = u32::try_from(hits.len() * CACHED_HIT_BYTES).unwrap_or(u32::MAX);
    let Ok(permit) =
        std::sync::Arc::clone(&ctx.budgets.search_cache_bytes).try_acquire_many_owned(bytes)
    else {
        tracing::debug!("search cache budget exhausted; results not kept");
        return;
    };
    let expires = now.instant + ctx.config.timeouts.search_cache;
    session.search_cache = Some(SearchCache {
        hits,
        thumbnails,
        expires,
        _budget: permit,
    });
}

/// ProfileSearchPartRequest: a slice of the cached results (spec §4.18).
pub(crate) async fn profile_search_part(
    ctx: &View,
    session: &mut Session,
    request: &ps::ProfileSearchPartRequest,
    now: Now,
) -> Result<ResponseType, Reject> {
    if session
        .search_cache
        .as_ref()
        .is_some_and(|c| c.expires <= now.instant)
    {
        session.search_cache = None;
    }
    let cache = session
        .search_cache
        .as_ref()
        .ok_or(Reject::status(Status::ErrorNotAvailable))?;
    let total = cache.hits.len();
    let (index, count) = (request.record_index as usize, request.record_count as usize);
    if index >= total {
        return Err(Reject::invalid("recordIndex"));
    }
    let (max_count, _) = limits(cache.thumbnails);
    if !(1..=max_count as usize).contains(&count) || index + count > total {
        return Err(Reject::invalid("recordCount"));
    }
    let slice = cache.hits[index..index + count].to_vec();
    let profiles = load(ctx, &slice, cache.thumbnails).await?;
    Ok(ResponseType::ProfileSearchPart(
        ps::ProfileSearchPartResponse {
            record_index: request.record_index,
            record_count: request.record_count,
            profiles,
        },
    ))
}

/// Builds the answer entries for `hits` from the store and the presence registry.
async fn load(
    ctx: &View,
    hits: &[Hit],
    thumbnails: bool,
) -> Result<Vec<ps::ProfileQueryInformation>, Reject> {
    let keys = hits.iter().map(|h| (h.id, h.server)).collect();
    let stored = ctx.store.load_results(keys, thumbnails).await?;
    let mut profiles = Vec::with_capacity(hits.len());
    for (hit, stored) in hits.iter().zip(stored) {
        let Some(stored) = stored else { continue };
        let is_online =
            hit.server.is_none() && ctx.hub.registry.is_online(crate::crypto::NetworkId(hit.id));
        profiles.push(ps::ProfileQueryInformation {
            is_hosted: hit.server.is_none(),
            hosting_server_network_id: hit.server.map(|s| s.to_vec()).unwrap_or_default(),
            is_online,
            // The bytes the owner signed, as stored (spec §3.4).
            signed_profile: Some(ps::SignedProfileInformation {
                profile: stored.profile,
                signature: stored.signature,
            }),
            thumbnail_image: stored.thumbnail,
        });
    }
    Ok(profiles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::testing;
    use crate::crypto::ServerKey;
    use crate::handlers::testing::{customer, now, session};

    fn by_name(name: &str, max_response: u32) -> ps::ProfileSearchRequest {
        ps::ProfileSearchRequest {
            max_response_record_count: max_response,
            max_total_record_count: 100,
            name: name.into(),
            latitude: NO_LOCATION,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_search_answers_its_first_slice_and_keeps_the_rest_until_it_expires() {
        let (_dir, ctx) = testing::ctx();
        for name in ["Alice", "Alan", "Bob"] {
            customer(&ctx, &ServerKey::generate(), name).await;
        }
        let mut searcher = session();
        let at = now();
        let ResponseType::ProfileSearch(found) =
            profile_search(&ctx, &mut searcher, by_name("Al*", 1), at)
                .await
                .expect("search")
        else {
            panic!("a search answer");
        };
        assert_eq!(found.total_record_count, 2);
        assert_eq!(found.profiles.len(), 1);
        let part = ps::ProfileSearchPartRequest {
            record_index: 1,
            record_count: 1,
        };
        let ResponseType::ProfileSearchPart(rest) =
            profile_search_part(&ctx, &mut searcher, &part, at)
                .await
                .expect("the rest")
        else {
            panic!("a part answer");
        };
        assert_eq!(rest.profiles.len(), 1);
        let beyond = ps::ProfileSearchPartRequest {
            record_index: 1,
            record_count: 2,
        };
        let answer = profile_search_part(&ctx, &mut searcher, &beyond, at).await;
        assert_eq!(answer.err(), Some(Reject::invalid("recordCount")));
        let mut later = at;
        later.instant += ctx.config.timeouts.search_cache;
        let answer = profile_search_part(&ctx, &mut searcher, &part, later).await;
        assert_eq!(
            answer.err(),
            Some(Reject::status(Status::ErrorNotAvailable))
        );
    }

    #[test]
    fn requests_are_checked_in_the_order_of_the_table() {
        let mut request = by_name("x", 0);
        request.r#type = "t".repeat(65);
        // Both are wrong; the record counts come first.
        assert_eq!(
            query(&request).err(),
            Some(Reject::invalid("maxResponseRecordCount"))
        );
        request.max_response_record_count = 1;
        assert_eq!(query(&request).err(), Some(Reject::invalid("type")));
        let mut located = by_name("x", 1);
        located.latitude = 0;
        assert_eq!(query(&located).err(), Some(Reject::invalid("radius")));
    }
}
