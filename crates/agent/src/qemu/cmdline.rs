//! The QEMU command line of a server, as a pure function of the driver's settings and the
//! server's record, plus parsing of `qemu-system-x86_64 --version`.
//!
//! One boot path for every image: the root disk is a virtio-blk device with `bootindex=0`
//! and SeaBIOS boots whatever is on it (the test image's syslinux, a cloud image's GRUB).
//! `-no-shutdown` keeps QEMU alive when the guest powers off, so a graceful reboot is
//! "ACPI power button → guest shuts down → system_reset → cont"; the driver quits the
//! process itself after a stop.

use super::layout::Layout;
use nimbus_model::agent::InstanceSpec;

/// The launch-relevant settings of the driver.
#[derive(Clone, Debug)]
pub struct LaunchSettings {
    pub accel: String,
    pub machine: String,
    /// Inclusive VNC display range (port = 5900 + display); QEMU takes the first free one.
    pub vnc_displays: (u16, u16),
    /// Also serve VNC over a WebSocket (port = 5700 + display) for browser consoles.
    pub vnc_websocket: bool,
}

/// Which extra disks the server has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disks {
    pub ephemeral: bool,
    pub swap: bool,
}

impl Disks {
    pub fn of(spec: &InstanceSpec) -> Self {
        Disks {
            ephemeral: spec.ephemeral_gb > 0,
            swap: spec.swap_mb > 0,
        }
    }
}

/// QEMU's option syntax separates with commas; a literal comma is doubled.
pub fn esc(s: &str) -> String {
    s.replace(',', ",,")
}

fn p(path: &std::path::Path) -> String {
    esc(&path.to_string_lossy())
}

/// The argv (without the binary) that boots `spec` from the files in `layout`.
pub fn build(settings: &LaunchSettings, layout: &Layout, spec: &InstanceSpec) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| (*s).to_owned()));
    let name = format!("guest=nimbus-{},debug-threads=on", spec.server_id);
    let machine = format!("{},accel={}", esc(&settings.machine), esc(&settings.accel));
    push(&["-name", &name, "-uuid", &spec.server_id.to_string()]);
    push(&["-machine", &machine]);
    push(&[
        "-m",
        &format!("{}M", spec.ram_mb.max(16)),
        "-smp",
        &spec.vcpus.max(1).to_string(),
    ]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-shutdown",
    ]);
    push(&["-msg", "timestamp=on"]);
    push(&["-pidfile", &layout.pid_file().to_string_lossy()]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", p(&layout.qmp_socket())),
    ]);
    // The chardev's logfile fills whether or not anybody is attached to the socket.
    push(&[
        "-chardev",
        &format!(
            "socket,id=serial0,path={},server=on,wait=off,logfile={},logappend=on",
            p(&layout.serial_socket()),
            p(&layout.console_log())
        ),
        "-serial",
        "chardev:serial0",
    ]);
    let mut disk = |id: &str, file: std::path::PathBuf, dev: &str, boot: bool| {
        let drive = format!(
            "file={},if=none,id={id},format=qcow2,node-name={id}-fmt",
            p(&file)
        );
        let mut device = format!("virtio-blk-pci,drive={id},id={dev}");
        if boot {
            device.push_str(",bootindex=0");
        }
        push(&["-drive", &drive, "-device", &device]);
    };
    disk("root", layout.root_disk(), "vda", true);
    let extra = Disks::of(spec);
    if extra.ephemeral {
        disk("eph0", layout.ephemeral_disk(), "vdb", false);
    }
    if extra.swap {
        disk(
            "swap",
            layout.swap_disk(),
            if extra.ephemeral { "vdc" } else { "vdb" },
            false,
        );
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        // Until per-network L2 segments exist, each NIC is a user-mode (slirp) network that
        // cannot reach the host's outside network (`restrict=on`).
        let netdev = format!("user,id=net{i},restrict=on");
        let device = format!(
            "virtio-net-pci,netdev=net{i},id=nic{i},mac={}",
            esc(&nic.mac)
        );
        push(&["-netdev", &netdev, "-device", &device]);
    }
    let (lo, hi) = settings.vnc_displays;
    let mut vnc = format!("127.0.0.1:{lo},to={hi},password=on");
    if settings.vnc_websocket {
        vnc.push_str(",websocket=on");
    }
    push(&["-device", "VGA", "-vnc", &vnc]);
    a
}

/// `QEMU emulator version 10.0.2 (Debian ...)` → (10, 0, 2).
pub fn parse_version(text: &str) -> Option<(u64, u64, u64)> {
    let rest = text.split("version ").nth(1)?;
    let word = rest.split_whitespace().next()?;
    let mut it = word.split('.').map(|n| n.parse::<u64>().ok());
    Some((
        it.next()??,
        it.next().flatten().unwrap_or(0),
        it.next().flatten().unwrap_or(0),
    ))
}

/// Nova's integer encoding of a hypervisor version: major * 1_000_000 + minor * 1000 + micro.
pub fn version_code((major, minor, micro): (u64, u64, u64)) -> u64 {
    major * 1_000_000 + minor * 1000 + micro
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_model::ServerId;
    use nimbus_model::agent::NicSpec;

    fn spec() -> InstanceSpec {
        InstanceSpec {
            server_id: ServerId::new(),
            name: "vm".into(),
            hostname: "vm".into(),
            vcpus: 2,
            ram_mb: 256,
            disk_gb: 1,
            ephemeral_gb: 1,
            swap_mb: 64,
            image: None,
            user_data: None,
            metadata: Default::default(),
            nics: vec![NicSpec {
                id: "p1".into(),
                network_id: "n1".into(),
                mac: "fa:16:3e:00:00:01".into(),
                ipv4: None,
                ipv4_prefix: None,
                gateway: None,
                ipv6: None,
                dhcp: true,
                firewall: String::new(),
            }],
            volumes: vec![],
        }
    }

    #[test]
    fn command_line_has_the_invariants() {
        let s = spec();
        let layout = Layout::new("/var/lib/nimbus,x/instances/a".into());
        let settings = LaunchSettings {
            accel: "tcg".into(),
            machine: "q35".into(),
            vnc_displays: (0, 99),
            vnc_websocket: true,
        };
        let argv = build(&settings, &layout, &s);
        let joined = argv.join(" ");
        for needle in [
            "-machine q35,accel=tcg",
            "-m 256M -smp 2",
            "-nodefaults -no-user-config -display none -no-shutdown",
            "-device virtio-blk-pci,drive=root,id=vda,bootindex=0",
            "id=eph0",
            "drive=swap,id=vdc",
            "mac=fa:16:3e:00:00:01",
            "-vnc 127.0.0.1:0,to=99,password=on,websocket=on",
            "logappend=on",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in {joined}");
        }
        // Commas in paths are doubled, so they cannot inject options.
        assert!(
            joined.contains("/var/lib/nimbus,,x/instances/a/qmp.sock,server=on"),
            "{joined}"
        );
        assert!(!joined.contains("-daemonize"));
        // Without extra disks the swap disk would be vdb.
        let mut plain = s.clone();
        plain.ephemeral_gb = 0;
        let joined = build(&settings, &layout, &plain).join(" ");
        assert!(
            !joined.contains("eph0") && joined.contains("drive=swap,id=vdb"),
            "{joined}"
        );
    }

    #[test]
    fn versions() {
        let v = parse_version("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2)\nCopyright")
            .unwrap();
        assert_eq!(v, (10, 0, 2));
        assert_eq!(version_code(v), 10_000_002);
        assert_eq!(parse_version("QEMU emulator version 7.2"), Some((7, 2, 0)));
        assert_eq!(parse_version("garbage"), None);
    }
}
