//! The files of one server on the host and the small JSON record that lets a restarted
//! agent (or a later action) know what the server is and how it was launched.
//!
//! `<state_dir>/instances/<server_id>/`:
//! - `instance.json`: [`Record`], written atomically (temp file + rename);
//! - `disk.qcow2` (root overlay), `disk.eph0.qcow2`, `disk.swap.qcow2`;
//! - `console.log` (serial log), `qemu.log` (QEMU's own stdout/stderr);
//! - `qmp.sock`, `serial.sock`, `qemu.pid`;
//! - `vm.state` (saved RAM/device state while suspended);
//! - `resize-old/` (the disks and record from before a resize, until confirm or revert),
//!   `resize-old.part/` (it, being written), `resize-old.trash/` (it, being deleted) and
//!   `resize.json` (how far a resize, revert or confirm got; see `resize.rs`).

use nimbus_model::agent::InstanceSpec;
use nimbus_model::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Unix socket paths must fit `sun_path` (108 bytes including the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Paths of one server's files.
#[derive(Clone, Debug)]
pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: PathBuf) -> Self {
        Layout { dir }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("instance.json")
    }
    pub fn root_disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn ephemeral_disk(&self) -> PathBuf {
        self.dir.join("disk.eph0.qcow2")
    }
    pub fn swap_disk(&self) -> PathBuf {
        self.dir.join("disk.swap.qcow2")
    }
    pub fn console_log(&self) -> PathBuf {
        self.dir.join("console.log")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial_socket(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn state_file(&self) -> PathBuf {
        self.dir.join("vm.state")
    }
    pub fn resize_old(&self) -> PathBuf {
        self.dir.join("resize-old")
    }
    pub fn resize_part(&self) -> PathBuf {
        self.dir.join("resize-old.part")
    }
    pub fn resize_trash(&self) -> PathBuf {
        self.dir.join("resize-old.trash")
    }
    pub fn resize_marker(&self) -> PathBuf {
        self.dir.join("resize.json")
    }
}

/// What a server is on this host: the spec it was last shaped by, its base image and the
/// argv of its last launch (a resume must use the same command line as the suspend).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub spec: InstanceSpec,
    /// The cached base image the root overlay is backed by, and its format.
    pub base: Option<PathBuf>,
    pub base_format: String,
    /// Arguments (without the binary) of the last launch.
    pub argv: Vec<String>,
    /// True while the server is meant to run (set by launches, cleared by driver-caused
    /// stops). A restarted agent reports a server that should run but does not.
    pub running: bool,
    /// When an admin password was last requested (the password itself is not kept: there
    /// is no guest agent to apply it).
    pub password_set_at: Option<String>,
    /// How many `pcie-root-port`s the last launch created (q35: one per NIC plus spares
    /// for hot-plug). Records from before networking default to none.
    #[serde(default)]
    pub root_ports: u32,
    /// Which root port each NIC sits on (MAC, lowercase → port index), for the running or
    /// suspended process. Kept with `argv`: a resume needs the same devices on the same
    /// buses.
    #[serde(default)]
    pub nic_ports: BTreeMap<String, u32>,
}

impl Record {
    pub fn new(spec: InstanceSpec) -> Self {
        Record {
            spec,
            base: None,
            base_format: String::new(),
            argv: Vec::new(),
            running: false,
            password_set_at: None,
            root_ports: 0,
            nic_ports: BTreeMap::new(),
        }
    }

    pub async fn load(path: &Path) -> Result<Option<Record>> {
        match tokio::fs::read(path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::internal(format!("parse {}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal(format!("read {}: {e}", path.display()))),
        }
    }

    /// Write atomically so a crash never leaves a half-written record.
    pub async fn save(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| Error::internal(format!("serialize record: {e}")))?;
        write_atomic(path, &bytes).await
    }
}

pub async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(|e| Error::internal(format!("write {}: {e}", tmp.display())))?;
    tokio::fs::rename(&tmp, path).await.map_err(|e| {
        Error::internal(format!(
            "rename {} -> {}: {e}",
            tmp.display(),
            path.display()
        ))
    })
}

/// Remove a file; a missing one is fine.
pub async fn remove_file(path: &Path) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::internal(format!("remove {}: {e}", path.display()))),
    }
}

pub async fn remove_dir_all(path: &Path) -> Result<()> {
    match tokio::fs::remove_dir_all(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::internal(format!("remove {}: {e}", path.display()))),
    }
}

pub async fn exists(path: &Path) -> bool {
    tokio::fs::try_exists(path).await.unwrap_or(false)
}

pub async fn exists_opt(path: Option<&Path>) -> bool {
    match path {
        Some(p) => exists(p).await,
        None => false,
    }
}

/// The last `lines` lines of a log (all of it when `None`), read from at most the last
/// `max_bytes` of the file. Serial output ends lines with CRLF; they become LF.
pub async fn tail_lines(path: &Path, lines: Option<u32>, max_bytes: u64) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = match tokio::fs::File::open(path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(Error::internal(format!("open {}: {e}", path.display()))),
    };
    let len = f
        .metadata()
        .await
        .map_err(|e| Error::internal(format!("stat {}: {e}", path.display())))?
        .len();
    let start = len.saturating_sub(max_bytes);
    f.seek(std::io::SeekFrom::Start(start))
        .await
        .map_err(|e| Error::internal(format!("seek {}: {e}", path.display())))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    f.read_to_end(&mut buf)
        .await
        .map_err(|e| Error::internal(format!("read {}: {e}", path.display())))?;
    let mut text = String::from_utf8_lossy(&buf)
        .replace("\r\n", "\n")
        .replace('\r', "");
    if start > 0 {
        // Drop the partial first line of a truncated read.
        if let Some(i) = text.find('\n') {
            text.drain(..=i);
        }
    }
    Ok(match lines {
        None => text,
        Some(n) => last_lines(&text, n as usize),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    let mut cut = body.len();
    let mut seen = 0;
    for (i, b) in body.bytes().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                cut = i + 1;
                break;
            }
        }
    }
    let start = if seen == n { cut } else { 0 };
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\nb\n", 0), "");
        assert_eq!(last_lines("", 3), "");
    }

    #[tokio::test]
    async fn tail_reads_crlf_logs_and_truncates() {
        let dir = std::env::temp_dir().join(format!("nimbus-layout-test-{}", uuid::Uuid::new_v4()));
        tokio::fs::create_dir_all(&dir).await.unwrap();
        let log = dir.join("console.log");
        assert_eq!(
            tail_lines(&log, None, 1024).await.unwrap(),
            "",
            "a missing log is empty"
        );
        tokio::fs::write(&log, b"one\r\ntwo\r\nthree\r\n")
            .await
            .unwrap();
        assert_eq!(
            tail_lines(&log, Some(2), 1024).await.unwrap(),
            "two\nthree\n"
        );
        assert_eq!(
            tail_lines(&log, None, 1024).await.unwrap(),
            "one\ntwo\nthree\n"
        );
        // Only the last 8 bytes ("e\r\nthree\r\n" minus the partial line) are read.
        assert_eq!(tail_lines(&log, None, 9).await.unwrap(), "three\n");
        tokio::fs::remove_dir_all(&dir).await.unwrap();
    }
}
