//! `/v2/images/{id}/file`: upload (`PUT`, `application/octet-stream`, streamed to the
//! blob store while hashed, no body-size limit) and download (`GET`, streamed from the
//! blob file, with single `Range` requests as Glance supports them)
//! (glance `api/v2/image_data.py`).

use super::images::{image_id, not_found_as};
use super::{Caller, GlanceResult};
use crate::AppState;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use nimbus_control::images::format_mismatch;
use nimbus_model::Error;
use nimbus_model::image::ImageStatus;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/image/v2/images/{id}/file",
        put(upload)
            .get(download)
            // Image data is streamed to disk; the global JSON body limit does not apply.
            .layer(DefaultBodyLimit::disable()),
    )
}

/// How many leading bytes are looked at before the data goes to the store.
const PEEK: usize = 512;

async fn upload(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    req: Request,
) -> GlanceResult {
    let ct = super::media_type(&headers);
    if ct.as_deref() != Some("application/octet-stream") {
        let shown = ct.clone().unwrap_or_else(|| "None".into());
        return Ok(super::unsupported_media(
            ct.as_deref(),
            &format!("Invalid content type {shown}"),
        ));
    }
    if let Some(size) = headers.get("x-openstack-image-size")
        && size
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok())
            .is_none()
    {
        return Err(Error::invalid("Invalid or missing image size in request headers.").into());
    }
    let iid = image_id(&id)?;
    let img = state
        .control
        .image_get(&ctx, iid)
        .await
        .map_err(not_found_as(&id))?;
    let mut body = req
        .into_body()
        .into_data_stream()
        .map_err(std::io::Error::other);
    // Look at the first bytes: Glance refuses data that does not match a disk format it
    // can inspect (415) and leaves the image queued.
    let mut head: Vec<Bytes> = Vec::new();
    let mut seen = 0usize;
    let mut failed: Option<std::io::Error> = None;
    while seen < PEEK {
        match body.next().await {
            Some(Ok(chunk)) => {
                seen += chunk.len();
                head.push(chunk);
            }
            Some(Err(e)) => {
                failed = Some(e);
                break;
            }
            None => break,
        }
    }
    if img.status == ImageStatus::Queued {
        let joined: Vec<u8> = head
            .iter()
            .flat_map(|c| c.iter().copied())
            .take(PEEK)
            .collect();
        if let Some(msg) = format_mismatch(
            img.disk_format.as_deref(),
            img.container_format.as_deref(),
            &joined,
        ) {
            return Ok(super::unsupported_media(
                Some("application/octet-stream"),
                &msg,
            ));
        }
    }
    let prefix = futures::stream::iter(head.into_iter().map(Ok));
    let failure = futures::stream::iter(failed.map(Err));
    let stream: std::pin::Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>> =
        Box::pin(prefix.chain(failure).chain(body));
    state
        .control
        .image_upload(&ctx, iid, stream)
        .await
        .map_err(not_found_as(&id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// A byte range resolved against the image size: (offset, length).
#[derive(Debug, PartialEq, Eq)]
enum Range {
    Whole,
    Part(u64, u64),
}

/// webob `Range.parse` plus glance's `get_range_from_request` and the serializer's
/// offset arithmetic. `Err` is the response to send (400 or 416).
fn parse_range(value: &str, size: u64) -> Result<Range, Response> {
    if value.contains(',') {
        return Err(super::fault(&Error::invalid(
            "Requests with multiple ranges are not supported in Glance. You may make multiple single-range requests instead.",
        )));
    }
    let unsatisfiable = |detail: &str| {
        super::page(
            StatusCode::RANGE_NOT_SATISFIABLE,
            "The Range requested is not available.",
            detail,
        )
    };
    let spec = value
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(|| unsatisfiable("Invalid Range header."))?;
    let (a, b) = spec
        .split_once('-')
        .ok_or_else(|| unsatisfiable("Invalid Range header."))?;
    let (a, b) = (a.trim(), b.trim());
    // (start, end-exclusive) as webob keeps them; a negative start is a suffix length.
    let (start, end): (i128, Option<i128>) = if a.is_empty() {
        let n: i128 = b
            .parse()
            .map_err(|_| unsatisfiable("Invalid Range header."))?;
        (-n, None)
    } else {
        let s: i128 = a
            .parse()
            .map_err(|_| unsatisfiable("Invalid Range header."))?;
        let e = if b.is_empty() {
            None
        } else {
            let e: i128 = b
                .parse()
                .map_err(|_| unsatisfiable("Invalid Range header."))?;
            if e < s {
                return Err(unsatisfiable("Invalid Range header."));
            }
            Some(e + 1)
        };
        (s, e)
    };
    let size = size as i128;
    if start >= size {
        return Err(unsatisfiable(&format!(
            "Invalid start position in Range header. Start position MUST be in the inclusive range [0, {}].",
            size - 1
        )));
    }
    let offset = if start >= 0 {
        start
    } else if start.abs() < size {
        size + start
    } else {
        0
    };
    let len = match end {
        Some(e) if e < size => e - offset,
        _ => size - offset,
    };
    Ok(Range::Part(offset as u64, len.max(0) as u64))
}

async fn download(
    State(state): State<AppState>,
    Caller(ctx): Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> GlanceResult {
    let iid = image_id(&id)?;
    let (img, file) = state
        .control
        .image_download(&ctx, iid)
        .await
        .map_err(not_found_as(&id))?;
    let Some(mut file) = file else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let size = img.size.unwrap_or(0);
    let range = match headers.get(header::RANGE).map(|v| v.to_str()) {
        None => Range::Whole,
        Some(Ok(v)) => match parse_range(v, size) {
            Ok(r) => r,
            Err(resp) => return Ok(resp),
        },
        Some(Err(_)) => {
            return Ok(super::page(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "The Range requested is not available.",
                "Invalid Range header.",
            ));
        }
    };
    let (status, offset, len) = match range {
        Range::Whole => (StatusCode::OK, 0, size),
        Range::Part(o, l) => (StatusCode::PARTIAL_CONTENT, o, l),
    };
    if offset > 0 {
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(|e| Error::internal(format!("seek image {id}: {e}")))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), 256 * 1024);
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(v) = super::header(&len.to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    if let Some(sum) = img.checksum.as_deref().and_then(super::header) {
        h.insert("content-md5", sum);
    }
    if status == StatusCode::PARTIAL_CONTENT
        && let Some(v) = super::header(&format!(
            "bytes {offset}-{}/{size}",
            (offset + len).saturating_sub(1)
        ))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-4", 10).unwrap(), Range::Part(0, 5));
        assert_eq!(parse_range("bytes=5-", 10).unwrap(), Range::Part(5, 5));
        assert_eq!(parse_range("bytes=-3", 10).unwrap(), Range::Part(7, 3));
        assert_eq!(parse_range("bytes=-30", 10).unwrap(), Range::Part(0, 10));
        assert_eq!(parse_range("bytes=2-100", 10).unwrap(), Range::Part(2, 8));
        for bad in ["bytes=10-", "bytes=5-2", "items=0-1", "bytes=x-1"] {
            assert_eq!(
                parse_range(bad, 10).unwrap_err().status(),
                StatusCode::RANGE_NOT_SATISFIABLE,
                "{bad}"
            );
        }
        assert_eq!(
            parse_range("bytes=0-1,3-4", 10).unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
    }
}
