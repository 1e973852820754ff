//! Choosing and building the hypervisor driver of an agent (in-process or `nimbus agent`).
//!
//! `auto` picks `qemu` when QEMU is installed and a guest image is available (the test
//! image built by `scripts/build-test-image.sh`), else `fake`; the choice and the reason are
//! logged at start.

use nimbus_agent::Hypervisor;
use nimbus_agent::fake::{FakeConfig, FakeDriver};
use nimbus_agent::qemu::{ImageSource, QemuConfig, QemuDriver};
use nimbus_model::agent::EventSink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Which driver to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Driver {
    Auto,
    Fake,
    Qemu,
    /// No in-process agent (`nimbus serve --no-agent`).
    None,
}

impl Driver {
    pub fn parse(s: &str) -> Option<Driver> {
        match s {
            "auto" => Some(Driver::Auto),
            "fake" => Some(Driver::Fake),
            "qemu" => Some(Driver::Qemu),
            _ => None,
        }
    }
}

/// QEMU driver settings.
#[derive(Clone, Debug)]
pub struct QemuSettings {
    /// `tcg` (default) or `kvm` (used only if a probe boot proves it works).
    pub accel: String,
    pub binary: Option<PathBuf>,
    /// The guest image offered as `nimbus-test` on first start.
    pub test_image: Option<PathBuf>,
}

impl Default for QemuSettings {
    fn default() -> Self {
        QemuSettings {
            accel: "tcg".into(),
            binary: None,
            test_image: default_test_image(),
        }
    }
}

/// `$NIMBUS_TEST_IMAGE`, or the build script's default output if it exists.
pub fn default_test_image() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("NIMBUS_TEST_IMAGE") {
        return Some(PathBuf::from(p));
    }
    let p = PathBuf::from("target/test-image/nimbus-test.qcow2");
    p.exists().then_some(p)
}

/// `qemu-system-x86_64` on the PATH.
pub fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("qemu-system-x86_64"))
        .find(|p| p.is_file())
}

/// Resolve `auto`, with the reason for the log line.
pub fn resolve(choice: &Driver, qemu: &QemuSettings) -> (Driver, String) {
    match choice {
        Driver::Auto => match (find_qemu().or(qemu.binary.clone()), qemu.test_image.as_ref().filter(|p| p.exists())) {
            (Some(bin), Some(img)) => (
                Driver::Qemu,
                format!("auto: QEMU found at {} and a guest image at {}", bin.display(), img.display()),
            ),
            (None, _) => (Driver::Fake, "auto: qemu-system-x86_64 is not installed (scripts/install-qemu.sh)".into()),
            (Some(_), None) => (
                Driver::Fake,
                "auto: QEMU is installed but no guest image was found (scripts/build-test-image.sh target/test-image)".into(),
            ),
        },
        other => (other.clone(), "chosen explicitly".into()),
    }
}

/// A built driver; `qemu` is kept to detach its guests at shutdown.
pub struct Built {
    pub driver: Arc<dyn Hypervisor>,
    pub qemu: Option<Arc<QemuDriver>>,
}

pub async fn build(
    kind: &Driver,
    data_dir: &Path,
    fake: &FakeConfig,
    qemu: &QemuSettings,
    host_name: &str,
    images: Arc<dyn ImageSource>,
    events: Arc<dyn EventSink>,
) -> anyhow::Result<Built> {
    match kind {
        Driver::Qemu => {
            let mut cfg = QemuConfig::new(data_dir.join("qemu"), images);
            cfg.accel = qemu.accel.clone();
            cfg.host_name = host_name.to_owned();
            if let Some(b) = qemu.binary.clone().or_else(find_qemu) {
                cfg.qemu_binary = b;
            }
            let d = Arc::new(QemuDriver::start(cfg, events).await?);
            Ok(Built {
                driver: d.clone(),
                qemu: Some(d),
            })
        }
        _ => {
            let mut f = fake.clone();
            f.work_dir = data_dir.join("fake");
            f.host_name = host_name.to_owned();
            Ok(Built {
                driver: Arc::new(FakeDriver::new(f)),
                qemu: None,
            })
        }
    }
}
