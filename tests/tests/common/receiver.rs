//! A webhook receiver for tests: a real HTTP server on `127.0.0.1` that records every request
//! and answers with the status a test sets.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::TestResult;

/// One request a receiver got, and the status it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub status: u16,
}

/// A real HTTP server on `127.0.0.1` (hyper, on its own runtime and thread) that records
/// every request and answers with a status the test sets (200 unless told otherwise). It
/// serves many connections at once, as a real receiver does: a notifier sends many requests
/// at a time, and a lead's next one only after the answer to its previous one.
pub struct Receiver {
    port: u16,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

type Answer = hyper::Response<http_body_util::Full<hyper::body::Bytes>>;

async fn receive(
    request: hyper::Request<hyper::body::Incoming>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
    log: Arc<Mutex<Vec<Received>>>,
) -> Result<Answer, hyper::Error> {
    use http_body_util::BodyExt;
    let path = request.uri().to_string();
    let headers = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_ascii_lowercase(),
                value.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let body = request.into_body().collect().await?.to_bytes();
    let delay = delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let code = status.load(Ordering::SeqCst);
    if let Ok(mut log) = log.lock() {
        log.push(Received {
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: code,
        });
    }
    let mut answer =
        hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from("{}")));
    *answer.status_mut() =
        hyper::StatusCode::from_u16(code).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    Ok(answer)
}

impl Receiver {
    pub fn start() -> TestResult<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let thread = {
            let (status, delay_ms, log) =
                (Arc::clone(&status), Arc::clone(&delay_ms), Arc::clone(&log));
            std::thread::spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    loop {
                        let stream = tokio::select! {
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue,
                            },
                            _ = &mut stopped => break,
                        };
                        let (status, delay_ms, log) =
                            (Arc::clone(&status), Arc::clone(&delay_ms), Arc::clone(&log));
                        tokio::spawn(async move {
                            let service = hyper::service::service_fn(move |request| {
                                receive(
                                    request,
                                    Arc::clone(&status),
                                    Arc::clone(&delay_ms),
                                    Arc::clone(&log),
                                )
                            });
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                .await;
                        });
                    }
                });
            })
        };
        Ok(Receiver {
            port,
            status,
            delay_ms,
            log,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Answers every request only after this long.
    pub fn slow(&self, delay_ms: u64) {
        self.delay_ms.store(delay_ms, Ordering::SeqCst);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    /// The `webhook-id`s of the requests answered with a `2xx`, in arrival order.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .map(|r| r.headers.get("webhook-id").cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
