//! The file steps of resize, confirm and revert, made crash-safe.
//!
//! A resize keeps the pre-resize disks and record in `resize-old/` until a confirm deletes
//! them or a revert moves them back. Which files hold the server's data depends on how far
//! that got, and a crash can stop it anywhere, so the progress is written down explicitly:
//! `resize.json` ([`Marker`], written atomically) names the phase, and every phase change
//! is one atomic step (a marker write or a directory rename). [`decide`] turns what exists
//! on disk into the one safe way on; it is a pure function with a table test.
//!
//! The steps, in order (a crash between any two is recovered by [`decide`]):
//! - resize: copy into `resize-old.part/`; marker `resizing`; rename `.part` to
//!   `resize-old/`; change the disks and the record; marker `resized`; launch.
//! - revert: marker `reverting` with the list of files `resize-old/` holds; move them back
//!   one by one; remove `resize-old/`; remove the marker.
//! - confirm: rename `resize-old/` to `resize-old.trash/`; remove the marker; delete the
//!   trash.
//!
//! Invariant: `resize-old/` is put back over the current disks only while the marker says
//! `resizing` (the guest has not run on the new disks: the launch comes after `resized`) or
//! `reverting` (a revert was asked for). In every other state the current disks are the
//! server's, so a stale `resize-old/` is never restored over newer data. A `resize-old/`
//! without a marker (written before this marker existed) counts as `resized`.

use super::layout::{self, Layout, Record};
use super::{Inner, io_err};
use nimbus_model::{Error, Result};
use serde::{Deserialize, Serialize};

/// How far a resize, revert or confirm got, as `resize.json` says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The disks are being changed; `resize-old/` (once it exists) holds the truth.
    Resizing,
    /// The new disks are complete and may have run; `resize-old/` is kept for a revert.
    Resized,
    /// `resize-old/` is being moved back.
    Reverting,
}

/// The content of `resize.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    pub phase: Phase,
    /// For `reverting`: the files `resize-old/` held when the revert began, so that a
    /// re-run tells a file already moved back (keep it) from one that did not exist before
    /// the resize (remove it).
    #[serde(default)]
    pub saved: Vec<String>,
}

/// What exists on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observed {
    pub marker: Option<Phase>,
    pub part: bool,
    pub old: bool,
    pub trash: bool,
}

/// Where the files stand once leftovers are cleaned up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// No resize in progress: the current disks are the server.
    Idle,
    /// A resize died before it finished: put `resize-old/` back (as a revert does).
    RollBack,
    /// Resized, waiting for confirm or revert: the current disks are the server.
    Resized,
    /// A revert died half-way: finish it.
    FinishRevert,
}

/// The recovery for what exists on disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub settled: Settled,
    /// `resize-old.part/` is an unfinished copy: delete it (the disks were not touched yet).
    pub discard_part: bool,
    /// `resize-old.trash/` is a confirmed resize's old disks: delete them.
    pub discard_trash: bool,
    /// The marker describes nothing that is left: remove it.
    pub clear_marker: bool,
}

/// The one safe way on from what exists on disk (see the module docs for the steps).
pub fn decide(o: Observed) -> Decision {
    let settled = match (o.marker, o.old) {
        (None, false) => Settled::Idle,
        // Written by a version without the marker: it finished its resize (the old code
        // put resize-old/ in place only after the copy), so the disks are current.
        (None, true) => Settled::Resized,
        // The copy did not complete (no rename yet): the disks are untouched.
        (Some(Phase::Resizing), false) => Settled::Idle,
        (Some(Phase::Resizing), true) => Settled::RollBack,
        (Some(Phase::Resized), true) => Settled::Resized,
        // A confirm renamed resize-old/ away (or finished) before it removed the marker.
        (Some(Phase::Resized), false) => Settled::Idle,
        (Some(Phase::Reverting), _) => Settled::FinishRevert,
    };
    Decision {
        settled,
        discard_part: o.part,
        discard_trash: o.trash,
        clear_marker: o.marker.is_some() && settled == Settled::Idle,
    }
}

/// The files a resize saves (the record last: it says what shape the disks have).
fn saved_files(l: &Layout) -> [std::path::PathBuf; 4] {
    [l.root_disk(), l.ephemeral_disk(), l.swap_disk(), l.record()]
}

fn name_of(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub async fn load_marker(l: &Layout) -> Result<Option<Marker>> {
    let path = l.resize_marker();
    match tokio::fs::read(&path).await {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::internal(format!("parse {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", &path, e)),
    }
}

pub async fn save_marker(l: &Layout, phase: Phase, saved: Vec<String>) -> Result<()> {
    let bytes = serde_json::to_vec(&Marker { phase, saved })
        .map_err(|e| Error::internal(format!("serialize resize marker: {e}")))?;
    layout::write_atomic(&l.resize_marker(), &bytes).await
}

/// Look at the files and clean up leftovers; answers where the files stand.
/// [`Settled::RollBack`] and [`Settled::FinishRevert`] are left to the caller, which must
/// first make sure no QEMU runs on the disks, then call [`revert_files`].
pub async fn recover(l: &Layout) -> Result<Settled> {
    let marker = load_marker(l).await?;
    let d = decide(Observed {
        marker: marker.as_ref().map(|m| m.phase),
        part: layout::exists(&l.resize_part()).await,
        old: layout::exists(&l.resize_old()).await,
        trash: layout::exists(&l.resize_trash()).await,
    });
    if d.discard_part {
        layout::remove_dir_all(&l.resize_part()).await?;
    }
    if d.discard_trash {
        layout::remove_dir_all(&l.resize_trash()).await?;
    }
    if d.clear_marker {
        layout::remove_file(&l.resize_marker()).await?;
    }
    Ok(d.settled)
}

/// Save the disks and record into `resize-old/` before a resize changes them; on return the
/// marker says `resizing`.
pub async fn save_old(l: &Layout) -> Result<()> {
    let part = l.resize_part();
    layout::remove_dir_all(&part).await?;
    tokio::fs::create_dir(&part)
        .await
        .map_err(|e| io_err("create", &part, e))?;
    for f in saved_files(l) {
        if layout::exists(&f).await {
            tokio::fs::copy(&f, part.join(name_of(&f)))
                .await
                .map_err(|e| io_err("copy", &f, e))?;
        }
    }
    save_marker(l, Phase::Resizing, Vec::new()).await?;
    tokio::fs::rename(&part, l.resize_old())
        .await
        .map_err(|e| io_err("rename", &part, e))
}

/// The resized disks and record are complete: from now on they are the server's.
pub async fn mark_resized(l: &Layout) -> Result<()> {
    save_marker(l, Phase::Resized, Vec::new()).await
}

/// Put `resize-old/` back in place (a revert, or the roll-back of a resize that died) and
/// reload the record from it. A `reverting` marker's list of saved files is kept, so a
/// re-run after a crash finishes the same revert.
pub async fn revert_files(l: &Layout, g: &mut Inner) -> Result<()> {
    let old = l.resize_old();
    let saved = match load_marker(l).await? {
        Some(m) if m.phase == Phase::Reverting => m.saved,
        _ => {
            let mut saved = Vec::new();
            for f in saved_files(l) {
                let name = name_of(&f);
                if layout::exists(&old.join(&name)).await {
                    saved.push(name);
                }
            }
            save_marker(l, Phase::Reverting, saved.clone()).await?;
            saved
        }
    };
    for f in saved_files(l) {
        let name = name_of(&f);
        let from = old.join(&name);
        if layout::exists(&from).await {
            tokio::fs::rename(&from, &f)
                .await
                .map_err(|e| io_err("rename", &from, e))?;
        } else if !saved.contains(&name) {
            // The file did not exist before the resize (a new ephemeral disk, swap).
            layout::remove_file(&f).await?;
        }
        // Else it was moved back before a crash: it is the saved one.
    }
    layout::remove_dir_all(&old).await?;
    layout::remove_file(&l.resize_marker()).await?;
    if let Some(rec) = Record::load(&l.record()).await? {
        g.record = Some(rec);
    }
    Ok(())
}

/// Delete `resize-old/` (a confirm, or a new resize that implies one).
pub async fn discard_old(l: &Layout) -> Result<()> {
    let (old, trash) = (l.resize_old(), l.resize_trash());
    if layout::exists(&old).await {
        layout::remove_dir_all(&trash).await?;
        tokio::fs::rename(&old, &trash)
            .await
            .map_err(|e| io_err("rename", &old, e))?;
    }
    layout::remove_file(&l.resize_marker()).await?;
    layout::remove_dir_all(&trash).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use Phase as P;
    use Settled::*;

    #[test]
    fn recovery_decision_table() {
        // (marker, part, old, trash) → (settled, clear_marker)
        let table = [
            (None, false, false, false, Idle, false),
            // Crash while copying: the disks are untouched; the copy goes.
            (None, true, false, false, Idle, false),
            (Some(P::Resizing), true, false, false, Idle, true),
            // Copy complete, disks maybe half-changed, the guest never ran on them.
            (Some(P::Resizing), false, true, false, RollBack, false),
            (Some(P::Resizing), true, true, false, RollBack, false),
            // Resized: the current disks are the server's, whatever their shape.
            (Some(P::Resized), false, true, false, Resized, false),
            (None, false, true, false, Resized, false),
            // Confirm half-way: old renamed to trash, or already deleted.
            (Some(P::Resized), false, false, true, Idle, true),
            (Some(P::Resized), false, false, false, Idle, true),
            (None, false, false, true, Idle, false),
            // Revert half-way: finish it, even once resize-old/ itself is gone.
            (Some(P::Reverting), false, true, false, FinishRevert, false),
            (Some(P::Reverting), false, false, false, FinishRevert, false),
        ];
        for (marker, part, old, trash, settled, clear) in table {
            let o = Observed {
                marker,
                part,
                old,
                trash,
            };
            let d = decide(o);
            assert_eq!(d.settled, settled, "{o:?}");
            assert_eq!(d.clear_marker, clear, "{o:?}");
            assert_eq!(d.discard_part, part, "{o:?}");
            assert_eq!(d.discard_trash, trash, "{o:?}");
        }
    }

    /// A file tree for one instance, removed on drop.
    struct Dir(Layout);

    impl Dir {
        async fn new() -> Dir {
            let d = std::env::temp_dir().join(format!("nimbus-resize-{}", uuid::Uuid::new_v4()));
            tokio::fs::create_dir_all(d.join("resize-old"))
                .await
                .unwrap();
            Dir(Layout::new(d))
        }
        fn read(&self, p: std::path::PathBuf) -> Option<Vec<u8>> {
            std::fs::read(p).ok()
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0.dir);
        }
    }

    async fn record(l: &Layout, disk_gb: u64) -> Vec<u8> {
        let mut spec = crate::qemu::tests::spec(nimbus_model::ServerId::new());
        spec.disk_gb = disk_gb;
        let path = l.dir.join("rec.tmp.json");
        Record::new(spec).save(&path).await.unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        bytes
    }

    /// A revert that crashed after moving the root disk back: the re-run keeps that disk
    /// (it is the saved one), moves the rest back and removes what the resize created.
    #[tokio::test]
    async fn a_revert_interrupted_half_way_is_finished_not_redone() {
        let d = Dir::new().await;
        let l = &d.0;
        let old = l.resize_old();
        std::fs::write(l.root_disk(), b"old root").unwrap(); // already moved back
        std::fs::write(l.swap_disk(), b"new swap").unwrap(); // made by the resize
        std::fs::write(l.record(), record(l, 2).await).unwrap(); // the resized record
        std::fs::write(old.join("instance.json"), record(l, 1).await).unwrap();
        save_marker(
            l,
            Phase::Reverting,
            vec!["disk.qcow2".into(), "instance.json".into()],
        )
        .await
        .unwrap();
        assert_eq!(recover(l).await.unwrap(), Settled::FinishRevert);
        let mut g = Inner::default();
        revert_files(l, &mut g).await.unwrap();
        assert_eq!(d.read(l.root_disk()).as_deref(), Some(&b"old root"[..]));
        assert_eq!(d.read(l.swap_disk()), None, "the resize's swap is gone");
        assert_eq!(g.record.unwrap().spec.disk_gb, 1, "the old record is back");
        assert!(!layout::exists(&old).await && !layout::exists(&l.resize_marker()).await);
        assert_eq!(recover(l).await.unwrap(), Settled::Idle);
    }

    /// A resize that finished (the guest may have written to the new disk since) is never
    /// rolled back; one that died before `resized` is, and a confirm leaves nothing.
    #[tokio::test]
    async fn only_an_unfinished_resize_is_rolled_back() {
        let d = Dir::new().await;
        let l = &d.0;
        std::fs::remove_dir(l.resize_old()).unwrap();
        std::fs::write(l.root_disk(), b"root v1").unwrap();
        std::fs::write(l.record(), record(l, 1).await).unwrap();
        save_old(l).await.unwrap();
        assert_eq!(
            recover(l).await.unwrap(),
            Settled::RollBack,
            "died while resizing"
        );
        std::fs::write(l.root_disk(), b"root v2, newer").unwrap();
        mark_resized(l).await.unwrap();
        assert_eq!(recover(l).await.unwrap(), Settled::Resized);
        assert_eq!(
            d.read(l.root_disk()).as_deref(),
            Some(&b"root v2, newer"[..]),
            "recovery keeps the newer disk"
        );
        discard_old(l).await.unwrap();
        assert_eq!(recover(l).await.unwrap(), Settled::Idle);
        assert!(!layout::exists(&l.resize_old()).await);
        assert!(!layout::exists(&l.resize_trash()).await);
        assert_eq!(
            d.read(l.root_disk()).as_deref(),
            Some(&b"root v2, newer"[..])
        );
    }
}
