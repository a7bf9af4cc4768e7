//! `leadscore serve`'s HTTP server against hostile, slow and many clients: every malformed
//! request gets the JSON error body of SPEC §6 and changes nothing, a slow client holds only
//! its own connection, and SIGTERM lets a request in flight finish.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{parse_response, read_response, rules, Server, TOKEN};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const VARS: [(&str, &str); 2] = [
    ("LEADSCORE_ALLOW_UNSIGNED", "1"),
    ("LEADSCORE_API_TOKEN", TOKEN),
];

fn connect(server: &Server) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
}

/// Sends raw bytes on a new connection and reads the answer to the end.
fn raw(server: &Server, bytes: &[u8]) -> (u16, Value) {
    let mut stream = connect(server);
    // the server may answer and close before it has read everything
    let _ = stream.write_all(bytes);
    read_response(&mut stream)
}

/// Reads one response of a kept-alive connection, by its `content-length`.
fn read_one(stream: &mut TcpStream) -> (u16, Value) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(
            stream.read(&mut byte).unwrap(),
            1,
            "closed mid-head: {buf:?}"
        );
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).unwrap();
    buf.extend_from_slice(&body);
    parse_response(&buf)
}

fn event(user: &str, id: &str) -> String {
    format!(
        r#"{{"type":"track","event":"Webinar Registered","userId":"{user}","messageId":"{id}","timestamp":"2026-01-12T09:00:00Z"}}"#
    )
}

fn post_head(length: usize) -> String {
    format!(
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn chunked_head() -> &'static str {
    "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
}

fn journal_lines(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("data/journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn assert_error(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(answer.0, status, "{}", answer.1);
    assert_eq!(answer.1["error"]["code"], json!(code), "{}", answer.1);
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        answer.1
    );
}

#[test]
fn malformed_requests_get_a_json_error_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &VARS);

    // a declared body of 10^14 bytes: refused before a byte of it is read
    let answer = raw(
        &server,
        format!("{}{{\"type\"", post_head(100_000_000_000_000)).as_bytes(),
    );
    assert_error(&answer, 413, "payload_too_large");
    assert!(answer.1["error"]["message"]
        .as_str()
        .unwrap()
        .contains("100000000000000"));

    // a chunked body that grows past the 1 MB limit
    let mut stream = connect(&server);
    stream.write_all(chunked_head().as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    for _ in 0..20 {
        if stream.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    assert_error(&read_response(&mut stream), 413, "payload_too_large");

    // an invalid chunk size
    let body = event("chunky", "m-chunky");
    let answer = raw(
        &server,
        format!("{}zz\r\n{body}\r\n0\r\n\r\n", chunked_head()).as_bytes(),
    );
    assert_error(&answer, 400, "invalid_request");

    // a body shorter than its Content-Length: the client stops sending
    let mut stream = connect(&server);
    let padded = format!("{}{}", event("short", "m-short"), " ".repeat(1500));
    stream
        .write_all(format!("{}{padded}", post_head(padded.len() + 500)).as_bytes())
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let answer = read_response(&mut stream);
    assert_error(&answer, 400, "invalid_request");
    assert!(
        answer.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Length"),
        "{}",
        answer.1
    );

    // Content-Length together with Transfer-Encoding (request smuggling), either order
    let body = event("smuggled", "m-smuggled");
    for head in [
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
    ] {
        let answer = raw(
            &server,
            format!("{head}{:x}\r\n{body}\r\n0\r\n\r\n", body.len()).as_bytes(),
        );
        assert_error(&answer, 400, "invalid_request");
    }
    // ... also as the second request of a kept-alive connection
    let mut stream = connect(&server);
    let first = event("kept", "m-kept");
    stream
        .write_all(
            format!(
                "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{first}",
                first.len()
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(read_one(&mut stream).0, 200);
    stream
        .write_all(
            format!(
                "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    assert_error(&read_one(&mut stream), 400, "invalid_request");

    // a head over the header limit
    let answer = raw(
        &server,
        format!(
            "GET /leads/x HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: {}\r\n\r\n",
            "p".repeat(20 * 1024)
        )
        .as_bytes(),
    );
    assert_error(&answer, 431, "headers_too_large");

    // heads hyper refuses before the service sees them: each gets the JSON error too
    for head in [
        "NOT HTTP AT ALL\r\n\r\n".to_owned(),
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n".to_owned(),
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip\r\n\r\n".to_owned(),
        "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: 1\r\n\r\n".to_owned(),
    ] {
        let answer = raw(&server, head.as_bytes());
        assert_error(&answer, 400, "invalid_request");
    }

    // none of them stored anything: only the one good call is in the journal
    for id in ["chunky", "short", "smuggled"] {
        assert_eq!(server.get_lead(id).0, 404, "{id}");
    }
    assert_eq!(server.get_lead("kept").0, 200);
    assert_eq!(journal_lines(dir.path()), 1);
    let (status, body) = server.post(&event("after", "m-after"));
    assert_eq!(status, 200, "{body}");
}

#[test]
fn a_slow_client_holds_only_its_own_connection_until_the_read_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &rules(), &["--read-timeout", "5"], &VARS);

    // one client sends a head and part of its body, another connects and sends nothing
    let mut slow = connect(&server);
    slow.write_all(format!("{}{{\"type\":", post_head(200)).as_bytes())
        .unwrap();
    let mut idle = connect(&server);

    // meanwhile others are served, over new connections and over one kept alive
    let mut kept = connect(&server);
    for i in 0..10 {
        let (status, body) = server.post(&event(&format!("busy{i}"), &format!("m-busy{i}")));
        assert_eq!(status, 200, "{body}");
        let call = event("kept", &format!("m-kept{i}"));
        kept.write_all(
            format!(
                "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{call}",
                call.len()
            )
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(read_one(&mut kept).0, 200);
    }
    // ... while the slow one still waits for its answer
    slow.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending = slow.read(&mut byte);
    assert!(
        matches!(&pending, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the slow client was answered before the others were served: {pending:?}"
    );
    slow.set_nonblocking(false).unwrap();

    // the slow body is refused when the read timeout passes; the idle connection is closed
    assert_error(&read_response(&mut slow), 408, "request_timeout");
    let mut rest = Vec::new();
    assert_eq!(idle.read_to_end(&mut rest).unwrap(), 0, "{rest:?}");
    assert_eq!(server.get_lead("busy9").0, 200);
}

#[test]
fn many_clients_at_once_are_all_served_and_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &VARS);
    let port = server.port;
    let clients: Vec<_> = (0..32)
        .map(|c| {
            std::thread::spawn(move || {
                let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .unwrap();
                for i in 0..5 {
                    // each call twice: the second is a duplicate
                    for _ in 0..2 {
                        let call = event(&format!("c{c}"), &format!("m-{c}-{i}"));
                        stream
                            .write_all(
                                format!(
                                    "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{call}",
                                    call.len()
                                )
                                .as_bytes(),
                            )
                            .unwrap();
                        let (status, body) = read_one(&mut stream);
                        assert_eq!(status, 200, "{body}");
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    assert_eq!(journal_lines(dir.path()), 32 * 5);
    let one = server.get_lead("c0").1;
    for c in 1..32 {
        let (status, lead) = server.get_lead(&format!("c{c}"));
        assert_eq!(status, 200);
        assert_eq!(lead["score"], one["score"], "c{c}: {lead}");
    }
}

#[test]
fn sigterm_lets_a_request_in_flight_finish_and_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &VARS);
    let call = event("late", "m-late");
    let (first, second) = call.split_at(call.len() / 2);
    let mut stream = connect(&server);
    stream
        .write_all(format!("{}{first}", post_head(call.len())).as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    std::thread::sleep(Duration::from_millis(300));
    // no new connections once stopping
    assert!(
        TcpStream::connect(("127.0.0.1", server.port)).is_err(),
        "the listener is still open"
    );
    stream.write_all(second.as_bytes()).unwrap();
    let (status, body) = read_response(&mut stream);
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.wait(), 0);

    // the answered call is in the journal: a restart has the lead
    let server = Server::start(dir.path(), &VARS);
    let (status, lead) = server.get_lead("late");
    assert_eq!(status, 200, "{lead}");
}

/// `Content-Encoding: gzip` over serve's HTTP server (SPEC §8): the body is inflated and
/// applied; one that inflates past the 1 MB limit from a few KB gets `413` and nothing is
/// journaled.
#[test]
fn a_gzip_body_is_taken_and_a_zip_bomb_refused() {
    use flate2::write::GzEncoder;
    let gzip = |data: &[u8]| {
        let mut e = GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    };
    let post = |body: &[u8]| {
        let mut bytes = format!(
            "POST /events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        bytes
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &VARS);
    let answer = raw(&server, &post(&gzip(event("u1", "m1").as_bytes())));
    assert_eq!(answer.0, 200, "{}", answer.1);
    assert_eq!(answer.1["results"][0]["lead"], json!("u1"), "{}", answer.1);
    let mut bomb = event("u1", "m2").into_bytes();
    bomb.resize(4 << 20, b' ');
    let bomb = gzip(&bomb);
    assert!(bomb.len() < 32 << 10, "{}", bomb.len());
    assert_error(&raw(&server, &post(&bomb)), 413, "payload_too_large");
    assert_error(
        &raw(&server, &post(event("u1", "m3").as_bytes())),
        400,
        "invalid_body",
    );
    assert_eq!(journal_lines(dir.path()), 1, "only the first call");
}
