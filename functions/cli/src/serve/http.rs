//! The HTTP server of `leadscore serve`: hyper 1 (HTTP/1.1) on tokio, in front of the same
//! [`Api`] the `score` function runs.
//!
//! What the server itself guards, before the API sees a request:
//! - the head: at most [`Limits::max_head`] bytes (hyper answers `431`) and read within the
//!   read timeout, which is also how long a kept-alive connection may stay idle; a head
//!   hyper cannot parse it answers `400` (both with the JSON error body, through
//!   [`JsonRefusals`]);
//! - the body: a declared `Content-Length` over the limit is answered `413` before a byte of
//!   it is read, a chunked body is cut off at the limit (`413`); a body must arrive within the
//!   read timeout (`408`); a body that ends early or has broken chunking, and a request with
//!   both `Content-Length` and `Transfer-Encoding`, are answered `400`; each with the JSON
//!   error body of SPEC §6, and the connection closed;
//! - connections: each on its own task, at most [`Limits::max_connections`] at once (more
//!   wait in the listen queue); a slow client holds its own connection only.
//!
//! The API's work (the journal's `fsync` and the engine) runs on one thread of its own that
//! takes the requests in turn ([`Job`]), so reading the other connections goes on meanwhile
//! and the engine never moves between threads. On shutdown the listener closes, requests
//! in flight finish and are answered, and idle connections are closed.

use super::framing::{Conflict, Watched};
use super::refusals::JsonRefusals;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use leadscore_core::api::{ApiRequest, ApiResponse};
use leadscore_rules::time::Micros;
use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// A request read whole, for the API's thread to answer through `reply`.
#[derive(Debug)]
pub(super) struct Job {
    /// The request.
    pub request: ApiRequest,
    /// When it was received (microseconds since the epoch).
    pub received: Micros,
    /// Where the answer goes.
    pub reply: tokio::sync::oneshot::Sender<ApiResponse>,
}

/// Where requests go to be answered.
pub(super) type Jobs = std::sync::mpsc::Sender<Job>;

/// What the server allows a client.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// The largest body, in bytes (the API's limit).
    pub max_body: usize,
    /// The largest request head (request line and headers), in bytes.
    pub max_head: usize,
    /// How long a head, or a body, may take to arrive; also the idle time of a kept-alive
    /// connection.
    pub read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// How long shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
}

impl Limits {
    /// The defaults, with this body limit.
    pub(super) fn new(max_body: usize) -> Self {
        Limits {
            max_body,
            max_head: 16 * 1024,
            read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

fn now_micros() -> Micros {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| {
        Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
    })
}

/// Serves on `listener`, sending each request to `jobs`, until `shutdown` completes, then
/// lets requests in flight finish (for at most [`Limits::shutdown_grace`]).
pub(super) async fn serve(
    listener: TcpListener,
    jobs: Jobs,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_timeout)
        .max_header_size(limits.max_head)
        .max_headers(100);
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // out of file descriptors and the like: wait, do not spin
                eprintln!("warning: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (watched, conflict) = Watched::new(stream, limits.max_head);
        let jobs = jobs.clone();
        let served = AtomicUsize::new(0);
        let service = hyper::service::service_fn(move |req| {
            let index = served.fetch_add(1, Ordering::SeqCst);
            answer(jobs.clone(), limits, req, conflict.clone(), index)
        });
        let io = JsonRefusals::new(watched, limits.max_head);
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // a client that goes away mid-request is its own business
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        eprintln!(
            "warning: requests still unanswered after {} s; stopping anyway",
            limits.shutdown_grace.as_secs()
        );
    }
}

/// An error the server answers itself, before the API: the JSON error body, and the
/// connection closed (the rest of the request is not read).
fn refuse(status: u16, code: &str, message: String) -> ApiResponse {
    ApiResponse::error(status, code, message, None).with_header("connection", "close")
}

/// Reads one request within the limits and answers it.
async fn answer(
    jobs: Jobs,
    limits: Limits,
    req: Request<Incoming>,
    conflict: Conflict,
    index: usize,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_owned();
    let path = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let response = match read(limits, req, path.clone(), &conflict, index).await {
        Ok(request) => {
            let (reply, answered) = tokio::sync::oneshot::channel();
            let job = Job {
                request,
                received: now_micros(),
                reply,
            };
            let unanswered = || {
                ApiResponse::error(
                    503,
                    "storage_unavailable",
                    "the server is stopping; send the request again",
                    None,
                )
                .with_header("retry-after", "1")
            };
            match jobs.send(job) {
                Ok(()) => answered.await.unwrap_or_else(|_| unanswered()),
                Err(_) => unanswered(),
            }
        }
        Err(refused) => refused,
    };
    eprintln!("{method} {path} {}", response.status);
    Ok(to_hyper(response))
}

/// The request as the API takes it, or the answer that refuses it.
async fn read(
    limits: Limits,
    req: Request<Incoming>,
    path: String,
    conflict: &Conflict,
    index: usize,
) -> Result<ApiRequest, ApiResponse> {
    if conflict.is(index) {
        return Err(refuse(
            400,
            "invalid_request",
            "the request has both `Content-Length` and `Transfer-Encoding`; send one".to_owned(),
        ));
    }
    let max_body = limits.max_body;
    let (parts, body) = req.into_parts();
    let declared = body.size_hint().exact();
    if let Some(length) = declared.filter(|n| *n > max_body as u64) {
        return Err(refuse(
            413,
            "payload_too_large",
            format!("the body has {length} bytes; the limit is {max_body} bytes"),
        ));
    }
    let collected =
        tokio::time::timeout(limits.read_timeout, Limited::new(body, max_body).collect()).await;
    let body = match collected {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(refuse(
                413,
                "payload_too_large",
                format!("the body has more than {max_body} bytes; the limit is {max_body} bytes"),
            ))
        }
        Ok(Err(e)) => {
            let what = match declared {
                Some(n) => format!("the body ended before its `Content-Length` of {n} bytes"),
                None => "the chunked body is malformed".to_owned(),
            };
            return Err(refuse(400, "invalid_request", format!("{what}: {e}")));
        }
        Err(_) => {
            return Err(refuse(
                408,
                "request_timeout",
                format!(
                    "the body did not arrive within {} s",
                    limits.read_timeout.as_secs()
                ),
            ))
        }
    };
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(ApiRequest {
        method: parts.method.as_str().to_owned(),
        path,
        headers,
        body: body.to_vec(),
    })
}

fn to_hyper(response: ApiResponse) -> Response<Full<Bytes>> {
    let mut out = Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() = hyper::StatusCode::from_u16(response.status)
        .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in response.headers {
        if let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            hyper::header::HeaderValue::from_str(&value),
        ) {
            out.headers_mut().append(name, value);
        }
    }
    out
}
