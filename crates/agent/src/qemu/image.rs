//! Images and disks: where image bytes come from ([`ImageSource`]), the per-host cache of
//! base images (one file per SHA-512, verified and inspected once), and the `qemu-img`
//! calls that make overlays, grow them and flatten them into snapshots.
//!
//! Safety invariant: a cached base never has a backing file or an external data file, and
//! is always opened with its declared format (never probed), so an uploaded qcow2 cannot make
//! QEMU read host files.

use async_trait::async_trait;
use nimbus_model::agent::ImageSpec;
use nimbus_model::{Error, Result};
use serde_json::Value;
use sha2::{Digest, Sha512};
use std::path::{Path, PathBuf};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

/// Where image bytes come from.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Write the bytes of `image` to `dest` (a new file).
    async fn fetch(&self, image: &ImageSpec, dest: &Path) -> Result<()>;
}

/// Reads blobs from the controller's image store on the same host:
/// `<blob_dir>/<sha512>` (the controller keeps them at `<image_dir>/blobs/<sha512>`).
#[derive(Clone, Debug)]
pub struct LocalBlobSource {
    pub blob_dir: PathBuf,
}

#[async_trait]
impl ImageSource for LocalBlobSource {
    async fn fetch(&self, image: &ImageSpec, dest: &Path) -> Result<()> {
        if image.hash.is_empty() || !image.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "Image {} has no valid SHA-512 hash.",
                image.id
            )));
        }
        let src = self.blob_dir.join(&image.hash);
        match tokio::fs::copy(&src, dest).await {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::not_found(format!(
                "Image {} has no data on this host.",
                image.id
            ))),
            Err(e) => Err(Error::internal(format!(
                "copy {} -> {}: {e}",
                src.display(),
                dest.display()
            ))),
        }
    }
}

/// The qemu block driver for a Glance `disk_format` the driver accepts.
pub fn qemu_format(disk_format: &str) -> Result<&'static str> {
    match disk_format {
        "qcow2" => Ok("qcow2"),
        "raw" => Ok("raw"),
        other => Err(Error::invalid(format!(
            "Image disk_format '{other}' is not supported by the qemu driver (use qcow2 or raw)."
        ))),
    }
}

/// Run `qemu-img` and return its stdout; a failure carries its stderr.
pub async fn qemu_img(args: &[&str]) -> Result<String> {
    let out = Command::new("qemu-img")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::internal(format!("run qemu-img: {e} (run scripts/install-qemu.sh)")))?;
    if !out.status.success() {
        return Err(Error::internal(format!(
            "qemu-img {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `qemu-img info` as JSON. `force_share` (-U) reads an image a running QEMU holds locked.
pub async fn info(path: &Path, format: &str, force_share: bool) -> Result<Value> {
    let p = path.to_string_lossy();
    let mut args = vec!["info", "--output=json", "-f", format];
    if force_share {
        args.push("-U");
    }
    args.push(&p);
    let out = qemu_img(&args).await?;
    serde_json::from_str(&out).map_err(|e| Error::internal(format!("qemu-img info output: {e}")))
}

pub fn virtual_size(info: &Value) -> u64 {
    info["virtual-size"].as_u64().unwrap_or(0)
}

/// A per-server copy-on-write overlay on `base`, `size` bytes (never smaller than the base).
pub async fn create_overlay(
    base: &Path,
    base_format: &str,
    overlay: &Path,
    size: u64,
) -> Result<()> {
    let base_size = virtual_size(&info(base, base_format, true).await?);
    let size = size.max(base_size).to_string();
    let b = base.to_string_lossy();
    let o = overlay.to_string_lossy();
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format,
        "-b",
        &b,
        &o,
        &size,
    ])
    .await?;
    Ok(())
}

/// A blank qcow2 disk.
pub async fn create_blank(path: &Path, size: u64) -> Result<()> {
    let p = path.to_string_lossy();
    qemu_img(&["create", "-q", "-f", "qcow2", &p, &size.to_string()]).await?;
    Ok(())
}

/// Grow a qcow2 to `size` bytes if it is smaller; disks never shrink.
pub async fn grow(path: &Path, size: u64) -> Result<()> {
    let current = virtual_size(&info(path, "qcow2", false).await?);
    if size > current {
        let p = path.to_string_lossy();
        qemu_img(&["resize", "-q", "-f", "qcow2", &p, &size.to_string()]).await?;
    }
    Ok(())
}

/// Flatten `overlay` (and its backing chain) into a standalone qcow2 at `dest`.
pub async fn flatten(overlay: &Path, dest: &Path, force_share: bool) -> Result<u64> {
    let tmp = dest.with_extension("part");
    let (o, t) = (overlay.to_string_lossy(), tmp.to_string_lossy());
    let mut args = vec!["convert", "-f", "qcow2", "-O", "qcow2"];
    if force_share {
        args.push("-U");
    }
    args.extend([o.as_ref(), t.as_ref()]);
    qemu_img(&args).await?;
    tokio::fs::rename(&tmp, dest)
        .await
        .map_err(|e| Error::internal(format!("rename {}: {e}", tmp.display())))?;
    let meta = tokio::fs::metadata(dest)
        .await
        .map_err(|e| Error::internal(format!("stat {}: {e}", dest.display())))?;
    Ok(meta.len())
}

/// SHA-512 of a file, hex.
pub async fn sha512_file(path: &Path) -> Result<String> {
    let mut f = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::internal(format!("open {}: {e}", path.display())))?;
    let mut h = Sha512::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .await
            .map_err(|e| Error::internal(format!("read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Base images under `<state_dir>/images/<sha512>.<format>`.
pub struct ImageCache {
    dir: PathBuf,
}

impl ImageCache {
    pub fn new(dir: PathBuf) -> Self {
        ImageCache { dir }
    }

    /// The cached base for `image`, fetching, verifying and inspecting it on first use.
    /// Returns the path and the qemu format.
    pub async fn base(
        &self,
        source: &dyn ImageSource,
        image: &ImageSpec,
    ) -> Result<(PathBuf, &'static str)> {
        let format = qemu_format(&image.disk_format)?;
        let hash = image.hash.to_ascii_lowercase();
        if hash.len() != 128 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::invalid(format!(
                "Image {} has no valid SHA-512 hash.",
                image.id
            )));
        }
        let path = self.dir.join(format!("{hash}.{format}"));
        if super::layout::exists(&path).await {
            return Ok((path, format));
        }
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| Error::internal(format!("create {}: {e}", self.dir.display())))?;
        // A unique temp name: concurrent fills of the same image each write their own file
        // and the atomic rename makes the last one win with identical bytes.
        let tmp = self
            .dir
            .join(format!("{hash}.{}.part", uuid::Uuid::new_v4().simple()));
        let result = self.fill(source, image, format, &hash, &tmp, &path).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result.map(|()| (path, format))
    }

    async fn fill(
        &self,
        source: &dyn ImageSource,
        image: &ImageSpec,
        format: &str,
        hash: &str,
        tmp: &Path,
        path: &Path,
    ) -> Result<()> {
        source.fetch(image, tmp).await?;
        let actual = sha512_file(tmp).await?;
        if actual != hash {
            return Err(Error::internal(format!(
                "image {} data does not match its SHA-512 (got {actual})",
                image.id
            )));
        }
        let meta = info(tmp, format, false).await.map_err(|e| {
            Error::invalid(format!(
                "Image {} is not a valid {format} image: {e}",
                image.id
            ))
        })?;
        if meta.get("backing-filename").is_some()
            || meta["format-specific"]["data"].get("data-file").is_some()
        {
            return Err(Error::invalid(format!(
                "Image {} refers to other files (backing or data file); upload a standalone image.",
                image.id
            )));
        }
        tokio::fs::rename(tmp, path)
            .await
            .map_err(|e| Error::internal(format!("rename {}: {e}", tmp.display())))
    }
}
