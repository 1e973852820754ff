//! A minimal QMP (QEMU Machine Protocol) client over a unix socket.
//!
//! Owns one connection: greeting, `qmp_capabilities`, commands tagged with an `id`, and the
//! asynchronous events QEMU interleaves with replies. A reader task parses one JSON object
//! per line and forwards replies and events into a channel, so [`Qmp::next_event`] and
//! [`Qmp::execute`] are cancel-safe (nothing is lost when a `select!` drops them).
//!
//! Invariant: a QMP socket serves one client at a time (a second client hangs until the
//! first disconnects), so exactly one `Qmp` exists per QEMU process, owned by its actor.

use nimbus_model::{Error, Result};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// An asynchronous QMP event (`{"event": NAME, "data": {...}}`).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub name: String,
    pub data: Value,
}

/// What the reader task forwards.
enum Msg {
    Reply {
        id: Option<u64>,
        result: std::result::Result<Value, QmpError>,
    },
    Event(Event),
}

/// An `{"error": {"class", "desc"}}` reply.
#[derive(Clone, Debug, PartialEq)]
pub struct QmpError {
    pub class: String,
    pub desc: String,
}

/// Why a command failed.
#[derive(Debug)]
pub enum ExecError {
    /// QEMU answered with an error.
    Qmp(QmpError),
    /// The connection is gone (QEMU exited or closed the socket).
    Closed,
    /// Writing the command failed.
    Io(std::io::Error),
}

impl std::fmt::Display for ExecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecError::Qmp(e) => write!(f, "QMP error {}: {}", e.class, e.desc),
            ExecError::Closed => f.write_str("QMP connection closed"),
            ExecError::Io(e) => write!(f, "QMP write failed: {e}"),
        }
    }
}

/// One QMP connection.
pub struct Qmp {
    writer: OwnedWriteHalf,
    rx: mpsc::UnboundedReceiver<Msg>,
    /// Events that arrived while `execute` waited for its reply.
    events: VecDeque<Event>,
    next_id: u64,
    reader: JoinHandle<()>,
    /// The QEMU version from the greeting, e.g. (10, 0, 2).
    pub version: (u64, u64, u64),
}

impl Drop for Qmp {
    fn drop(&mut self) {
        // The reader holds the read half; without this the socket would stay half-open and
        // QEMU would not accept the next client.
        self.reader.abort();
    }
}

impl Qmp {
    /// Connect, read the greeting and negotiate capabilities. `timeout` bounds the whole
    /// handshake: a QMP socket that already has a client accepts the connection but sends
    /// no greeting until that client leaves.
    pub async fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        tokio::time::timeout(timeout, Self::handshake(path))
            .await
            .map_err(|_| {
                Error::internal(format!("QMP handshake on {} timed out", path.display()))
            })?
    }

    async fn handshake(path: &Path) -> Result<Qmp> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| Error::internal(format!("connect {}: {e}", path.display())))?;
        let (read, writer) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines
            .next_line()
            .await
            .map_err(|e| Error::internal(format!("QMP greeting: {e}")))?
            .ok_or_else(|| Error::internal("QMP closed before its greeting"))?;
        let greeting: Value = serde_json::from_str(&greeting)
            .map_err(|e| Error::internal(format!("QMP greeting is not JSON: {e}")))?;
        let v = &greeting["QMP"]["version"]["qemu"];
        let version = (
            v["major"].as_u64().unwrap_or(0),
            v["minor"].as_u64().unwrap_or(0),
            v["micro"].as_u64().unwrap_or(0),
        );
        if greeting.get("QMP").is_none() {
            return Err(Error::internal(format!(
                "unexpected QMP greeting: {greeting}"
            )));
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(async move {
            // Ends at EOF or a read error; dropping `tx` closes the channel, which is how
            // the owner learns the connection is gone.
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(msg) = parse(&line)
                    && tx.send(msg).is_err()
                {
                    break;
                }
            }
        });
        let mut qmp = Qmp {
            writer,
            rx,
            events: VecDeque::new(),
            next_id: 1,
            reader,
            version,
        };
        qmp.execute("qmp_capabilities", None)
            .await
            .map_err(|e| Error::internal(format!("qmp_capabilities: {e}")))?;
        Ok(qmp)
    }

    /// Run one command and return its `return` value. Events that arrive meanwhile are kept
    /// for [`Qmp::next_event`]. Replies to earlier, abandoned commands are skipped by id.
    pub async fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> std::result::Result<Value, ExecError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "execute": command, "id": id });
        if let Some(args) = arguments {
            msg["arguments"] = args;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer
            .write_all(line.as_bytes())
            .await
            .map_err(ExecError::Io)?;
        loop {
            match self.rx.recv().await {
                None => return Err(ExecError::Closed),
                Some(Msg::Event(e)) => self.events.push_back(e),
                Some(Msg::Reply {
                    id: Some(rid),
                    result,
                }) if rid == id => {
                    return result.map_err(ExecError::Qmp);
                }
                Some(Msg::Reply { .. }) => {}
            }
        }
    }

    /// An event that has already arrived, without waiting.
    pub fn try_next_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            match self.rx.try_recv().ok()? {
                Msg::Event(e) => return Some(e),
                Msg::Reply { .. } => {}
            }
        }
    }

    /// The next asynchronous event, or `None` once the connection is closed. Cancel-safe.
    pub async fn next_event(&mut self) -> Option<Event> {
        if let Some(e) = self.events.pop_front() {
            return Some(e);
        }
        loop {
            match self.rx.recv().await? {
                Msg::Event(e) => return Some(e),
                Msg::Reply { .. } => {}
            }
        }
    }
}

fn parse(line: &str) -> Option<Msg> {
    let v: Value = serde_json::from_str(line).ok()?;
    if let Some(name) = v.get("event").and_then(Value::as_str) {
        return Some(Msg::Event(Event {
            name: name.to_owned(),
            data: v.get("data").cloned().unwrap_or(Value::Null),
        }));
    }
    let id = v.get("id").and_then(Value::as_u64);
    if let Some(r) = v.get("return") {
        return Some(Msg::Reply {
            id,
            result: Ok(r.clone()),
        });
    }
    if let Some(e) = v.get("error") {
        return Some(Msg::Reply {
            id,
            result: Err(QmpError {
                class: e["class"].as_str().unwrap_or("GenericError").to_owned(),
                desc: e["desc"].as_str().unwrap_or_default().to_owned(),
            }),
        });
    }
    None
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    /// A scripted QMP server: answers each command by name, emitting an event before the
    /// reply to `cont`, and closing the connection on `quit`.
    pub(crate) async fn fake_server(listener: UnixListener) {
        let (stream, _) = listener.accept().await.unwrap();
        let (read, mut write) = stream.into_split();
        let greeting = r#"{"QMP": {"version": {"qemu": {"micro": 2, "minor": 0, "major": 10}, "package": ""}, "capabilities": ["oob"]}}"#;
        write
            .write_all(format!("{greeting}\n").as_bytes())
            .await
            .unwrap();
        let mut lines = BufReader::new(read).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let v: Value = serde_json::from_str(&line).unwrap();
            let id = v["id"].clone();
            let reply = match v["execute"].as_str().unwrap() {
                "qmp_capabilities" => json!({"return": {}, "id": id}),
                "query-status" => {
                    json!({"return": {"status": "running", "running": true}, "id": id})
                }
                "cont" => {
                    let ev = json!({"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}});
                    write.write_all(format!("{ev}\n").as_bytes()).await.unwrap();
                    // A stale reply with a foreign id must be skipped.
                    write
                        .write_all(b"{\"return\": {}, \"id\": 999}\n")
                        .await
                        .unwrap();
                    json!({"return": {}, "id": id})
                }
                "quit" => {
                    write
                        .write_all(format!("{}\n", json!({"return": {}, "id": id})).as_bytes())
                        .await
                        .unwrap();
                    return;
                }
                other => {
                    json!({"error": {"class": "CommandNotFound", "desc": format!("The command {other} has not been found")}, "id": id})
                }
            };
            write
                .write_all(format!("{reply}\n").as_bytes())
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn commands_events_errors_and_close() {
        let dir = std::env::temp_dir().join(format!("nimbus-qmp-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        let server = tokio::spawn(fake_server(UnixListener::bind(&path).unwrap()));
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).await.unwrap();
        assert_eq!(qmp.version, (10, 0, 2));
        let status = qmp.execute("query-status", None).await.unwrap();
        assert_eq!(status["status"], "running");
        qmp.execute("cont", None).await.unwrap();
        assert_eq!(
            qmp.try_next_event().unwrap().name,
            "RESUME",
            "kept while waiting for the reply"
        );
        assert!(qmp.try_next_event().is_none());
        match qmp.execute("nonsense", Some(json!({"x": 1}))).await {
            Err(ExecError::Qmp(e)) => assert_eq!(e.class, "CommandNotFound"),
            other => panic!("expected a QMP error, got {other:?}"),
        }
        qmp.execute("quit", None).await.unwrap();
        assert!(
            qmp.next_event().await.is_none(),
            "the closed connection ends the event stream"
        );
        assert!(matches!(
            qmp.execute("query-status", None).await,
            Err(ExecError::Closed | ExecError::Io(_))
        ));
        server.await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn handshake_times_out_when_no_greeting() {
        let dir = std::env::temp_dir().join(format!("nimbus-qmp-test-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("qmp.sock");
        // Accepts but never greets, like a QMP socket that already has a client.
        let listener = UnixListener::bind(&path).unwrap();
        let hold = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s);
        });
        let err = Qmp::connect(&path, Duration::from_millis(200))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("timed out"), "{err}");
        hold.abort();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn parses_replies_and_events() {
        assert!(matches!(
            parse(r#"{"return": {}, "id": 3}"#),
            Some(Msg::Reply {
                id: Some(3),
                result: Ok(_)
            })
        ));
        match parse(r#"{"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}}"#)
        {
            Some(Msg::Event(e)) => {
                assert_eq!(e.name, "SHUTDOWN");
                assert_eq!(e.data["guest"], true);
            }
            _ => panic!("not an event"),
        }
        assert!(parse("not json").is_none());
        assert!(parse(r#"{"QMP": {}}"#).is_none());
    }
}
