//! A `leadscore serve` process on a free port for the tests, and raw HTTP requests to it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "tok-123";

pub fn rules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules/b2b-saas")
}

pub fn events() -> Vec<String> {
    std::fs::read_to_string(rules().join("events.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

pub struct Server {
    pub child: Child,
    pub port: u16,
}

impl Server {
    /// Starts `leadscore serve --port 0` with these variables; waits for the printed URL.
    pub fn start(dir: &Path, vars: &[(&str, &str)]) -> Server {
        Server::start_with_rules(dir, &rules(), vars)
    }

    /// [`Server::start`] with these rules.
    pub fn start_with_rules(dir: &Path, rules: &Path, vars: &[(&str, &str)]) -> Server {
        Server::start_with(dir, rules, &[], vars)
    }

    /// [`Server::start_with_rules`] with more arguments.
    pub fn start_with(dir: &Path, rules: &Path, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_leadscore"));
        cmd.args(["serve", "--port", "0", "--rules"])
            .arg(rules)
            .args(args)
            .arg("--data")
            .arg(dir.join("data/journal.jsonl"))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap());
        for var in [
            "LEADSCORE_WEBHOOK_SECRET",
            "LEADSCORE_API_TOKEN",
            "LEADSCORE_ALLOW_UNSIGNED",
            "LEADSCORE_RULES",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = String::new();
        let port = loop {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                panic!(
                    "serve ended before listening:\n{seen}\nstderr: {}",
                    std::fs::read_to_string(dir.join("stderr.txt")).unwrap_or_default()
                );
            };
            seen.push_str(&line);
            seen.push('\n');
            if let Some(rest) = line.split("http://127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                break digits.parse().unwrap();
            }
        };
        assert!(seen.contains("signatures: "), "{seen}");
        // keep reading stdout so the server never blocks on it
        std::thread::spawn(move || for _ in lines {});
        Server { child, port }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Value) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        // the server may answer (413) before it has read the whole body
        let _ = stream.write_all(body);
        read_response(&mut stream)
    }

    pub fn post(&self, body: &str) -> (u16, Value) {
        self.request(
            "POST",
            "/events",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
    }

    pub fn get_lead(&self, id: &str) -> (u16, Value) {
        let auth = format!("Bearer {TOKEN}");
        self.request(
            "GET",
            &format!("/leads/{id}"),
            &[("Authorization", &auth)],
            b"",
        )
    }

    /// Sends SIGINT and waits for the exit status.
    pub fn interrupt(self) -> i32 {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
        assert!(sent.success());
        self.wait()
    }

    /// Waits (at most 20 s) for the process to exit; its exit status.
    pub fn wait(mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("serve did not stop");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads a response to its end (the server closes the connection): the status and the body as
/// JSON (`Null` when it is not).
pub fn read_response(stream: &mut TcpStream) -> (u16, Value) {
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    parse_response(&response)
}

/// The status and JSON body of one whole response.
pub fn parse_response(response: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(response);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}
