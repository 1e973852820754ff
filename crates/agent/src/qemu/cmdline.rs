//! The QEMU command line of a server, as a pure function of the driver's settings and the
//! server's record, plus parsing of `qemu-system-x86_64 --version`.
//!
//! One boot path for every image: the root disk is a virtio-blk device with `bootindex=0`
//! and SeaBIOS boots whatever is on it (the test image's syslinux, a cloud image's GRUB).
//! `-no-shutdown` keeps QEMU alive when the guest powers off, so a graceful reboot is
//! "ACPI power button → guest shuts down → system_reset → cont"; the driver quits the
//! process itself after a stop.
//!
//! NICs: each is a `dgram` netdev between its own unix socket (bound by QEMU, in the
//! instance directory) and its network's switch socket (bound by the agent), and a
//! `virtio-net-pci` with the allocated MAC. On q35 every NIC sits on its own
//! `pcie-root-port`, plus [`HOTPLUG_SLOTS`] empty ones, because devices on the root complex
//! itself cannot be hot-unplugged. Per-NIC guest settings travel in SMBIOS OEM strings
//! (type 11), which the guest reads from `/sys/firmware/dmi/entries/11-*/raw`: the image
//! boots from its own disk, so the driver cannot add kernel arguments.

use super::layout::Layout;
use nimbus_model::agent::{InstanceSpec, NicSpec};
use serde_json::{Value, json};
use std::path::PathBuf;

/// Empty root ports a q35 guest gets for NICs hot-plugged while it runs.
pub const HOTPLUG_SLOTS: u32 = 4;

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

/// True for machine types with a PCIe root complex (q35), where hot-pluggable devices
/// need root ports.
pub fn has_pcie_root_ports(machine: &str) -> bool {
    machine.contains("q35")
}

/// How one NIC is wired into QEMU.
#[derive(Clone, Debug, PartialEq)]
pub struct NicWiring {
    /// Lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The MAC as 12 hex digits: names the netdev (`net-<hex>`) and device (`nic-<hex>`).
    pub hex: String,
    /// QEMU's end of the link (the NIC's socket in the instance directory).
    pub local: PathBuf,
    /// The network's switch socket.
    pub remote: PathBuf,
    /// The root port (`rp<N>`) the device sits on; `None` = the machine's default bus.
    pub port: Option<u32>,
}

impl NicWiring {
    pub fn netdev_id(&self) -> String {
        format!("net-{}", self.hex)
    }

    pub fn device_id(&self) -> String {
        format!("nic-{}", self.hex)
    }

    /// `-netdev ... -device ...` for this NIC.
    pub fn args(&self) -> Vec<String> {
        let netdev = format!(
            "dgram,id={},local.type=unix,local.path={},remote.type=unix,remote.path={}",
            self.netdev_id(),
            p(&self.local),
            p(&self.remote)
        );
        let mut device = format!(
            "virtio-net-pci,netdev={},id={},mac={}",
            self.netdev_id(),
            self.device_id(),
            esc(&self.mac)
        );
        if let Some(k) = self.port {
            device.push_str(&format!(",bus=rp{k}"));
        }
        vec!["-netdev".into(), netdev, "-device".into(), device]
    }

    /// QMP `netdev_add` arguments (hot-plug).
    pub fn netdev_add(&self) -> Value {
        json!({
            "type": "dgram",
            "id": self.netdev_id(),
            "local": {"type": "unix", "path": self.local.to_string_lossy()},
            "remote": {"type": "unix", "path": self.remote.to_string_lossy()},
        })
    }

    /// QMP `device_add` arguments (hot-plug).
    pub fn device_add(&self) -> Value {
        let mut v = json!({
            "driver": "virtio-net-pci",
            "id": self.device_id(),
            "netdev": self.netdev_id(),
            "mac": self.mac,
        });
        if let Some(k) = self.port {
            v["bus"] = json!(format!("rp{k}"));
        }
        v
    }
}

/// The NICs of a launch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wiring {
    /// `pcie-root-port`s to create (`rp0` ..).
    pub root_ports: u32,
    /// In `spec.nics` order, which is the guest's eth0, eth1, ... order.
    pub nics: Vec<NicWiring>,
}

/// Argv without one NIC's `-netdev`/`-device` pair (after a hot-unplug), so a later resume
/// starts the same devices the saved state has.
pub fn without_nic(argv: &[String], hex: &str) -> Vec<String> {
    let netdev = format!("dgram,id=net-{hex},");
    let device = format!(",id=nic-{hex},");
    let mut out = Vec::with_capacity(argv.len());
    let mut i = 0;
    while i < argv.len() {
        let drop_pair = i + 1 < argv.len()
            && ((argv[i] == "-netdev" && argv[i + 1].starts_with(&netdev))
                || (argv[i] == "-device" && argv[i + 1].contains(&device)));
        if drop_pair {
            i += 2;
        } else {
            out.push(argv[i].clone());
            i += 1;
        }
    }
    out
}

/// The SMBIOS OEM string that tells the guest how to configure a NIC:
/// `nimbus-nic <mac> <dhcp|static|none> [ip4=<addr>/<prefix>] [gw4=<addr>] [ip6=<addr>/64]`.
/// `dhcp`: the network serves DHCP (the address comes from there); `static`: configure
/// `ip4` (and the default route via `gw4`) by hand; `none`: an address-less NIC. `ip6` is
/// the EUI-64 address, configured statically in every mode (there is no router to
/// advertise a prefix).
pub fn nic_oem_string(nic: &NicSpec) -> String {
    let mac = nic.mac.to_ascii_lowercase();
    let mut s = match (&nic.ipv4, nic.ipv4_prefix, nic.dhcp) {
        (Some(_), _, true) => format!("nimbus-nic {mac} dhcp"),
        (Some(ip), Some(prefix), false) => {
            let mut s = format!("nimbus-nic {mac} static ip4={ip}/{prefix}");
            if let Some(g) = &nic.gateway {
                s.push_str(&format!(" gw4={g}"));
            }
            s
        }
        _ => format!("nimbus-nic {mac} none"),
    };
    if let Some(v6) = &nic.ipv6 {
        s.push_str(&format!(" ip6={v6}/64"));
    }
    s
}

/// The argv (without the binary) that boots `spec` from the files in `layout`, with its
/// NICs wired as `wiring` says.
pub fn build(
    settings: &LaunchSettings,
    layout: &Layout,
    spec: &InstanceSpec,
    wiring: &Wiring,
) -> Vec<String> {
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
    // Root ports first: a device names its port, which must exist by then. Their order
    // fixes their PCI addresses, so the guest enumerates NICs in `spec.nics` order.
    for k in 0..wiring.root_ports {
        let port = format!("pcie-root-port,id=rp{k},chassis={},io-reserve=0", k + 1);
        push(&["-device", &port]);
    }
    for nic in &wiring.nics {
        a.extend(nic.args());
    }
    if !spec.nics.is_empty() {
        let values: Vec<String> = spec
            .nics
            .iter()
            .map(|n| format!("value={}", esc(&nic_oem_string(n))))
            .collect();
        a.push("-smbios".into());
        a.push(format!("type=11,{}", values.join(",")));
    }
    let mut push = |args: &[&str]| a.extend(args.iter().map(|s| (*s).to_owned()));
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

    fn wiring(s: &InstanceSpec) -> Wiring {
        Wiring {
            root_ports: s.nics.len() as u32 + HOTPLUG_SLOTS,
            nics: s
                .nics
                .iter()
                .enumerate()
                .map(|(i, n)| NicWiring {
                    mac: n.mac.clone(),
                    hex: n.mac.replace(':', ""),
                    local: format!(
                        "/var/lib/nimbus,x/instances/a/nic-{}.sock",
                        n.mac.replace(':', "")
                    )
                    .into(),
                    remote: "/var/lib/nimbus,x/net/n1.sock".into(),
                    port: Some(i as u32),
                })
                .collect(),
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
        let argv = build(&settings, &layout, &s, &wiring(&s));
        let joined = argv.join(" ");
        for needle in [
            "-machine q35,accel=tcg",
            "-m 256M -smp 2",
            "-nodefaults -no-user-config -display none -no-shutdown",
            "-device virtio-blk-pci,drive=root,id=vda,bootindex=0",
            "id=eph0",
            "drive=swap,id=vdc",
            "-device pcie-root-port,id=rp0,chassis=1,io-reserve=0",
            "-device pcie-root-port,id=rp4,chassis=5,io-reserve=0",
            "-netdev dgram,id=net-fa163e000001,local.type=unix,local.path=/var/lib/nimbus,,x/instances/a/nic-fa163e000001.sock,remote.type=unix,remote.path=/var/lib/nimbus,,x/net/n1.sock",
            "-device virtio-net-pci,netdev=net-fa163e000001,id=nic-fa163e000001,mac=fa:16:3e:00:00:01,bus=rp0",
            "-smbios type=11,value=nimbus-nic fa:16:3e:00:00:01 none",
            "-vnc 127.0.0.1:0,to=99,password=on,websocket=on",
            "logappend=on",
        ] {
            assert!(joined.contains(needle), "missing {needle:?} in {joined}");
        }
        assert!(!joined.contains("rp5"), "one port per NIC plus the spares");
        assert!(!joined.contains("-netdev user"), "no user-mode networking");
        // Commas in paths are doubled, so they cannot inject options.
        assert!(
            joined.contains("/var/lib/nimbus,,x/instances/a/qmp.sock,server=on"),
            "{joined}"
        );
        assert!(!joined.contains("-daemonize"));
        // Without extra disks the swap disk would be vdb; without NICs there is no SMBIOS.
        let mut plain = s.clone();
        plain.ephemeral_gb = 0;
        plain.nics.clear();
        let joined = build(&settings, &layout, &plain, &Wiring::default()).join(" ");
        assert!(
            !joined.contains("eph0") && joined.contains("drive=swap,id=vdb"),
            "{joined}"
        );
        assert!(!joined.contains("-smbios") && !joined.contains("-netdev"));
    }

    #[test]
    fn hot_plug_pieces_match_the_command_line() {
        let s = spec();
        let w = wiring(&s).nics.remove(0);
        assert_eq!(w.netdev_add()["type"], "dgram");
        assert_eq!(
            w.netdev_add()["local"]["path"],
            "/var/lib/nimbus,x/instances/a/nic-fa163e000001.sock",
            "QMP takes paths verbatim (no comma doubling)"
        );
        assert_eq!(w.device_add()["bus"], "rp0");
        assert_eq!(w.device_add()["mac"], "fa:16:3e:00:00:01");
        // Removing a NIC's pair leaves everything else.
        let mut argv = vec!["-name".to_owned(), "x".to_owned()];
        argv.extend(w.args());
        let other = NicWiring {
            mac: "fa:16:3e:00:00:02".into(),
            hex: "fa163e000002".into(),
            port: None,
            ..w.clone()
        };
        argv.extend(other.args());
        argv.push("-vnc".into());
        let mut want = vec!["-name".to_owned(), "x".to_owned()];
        want.extend(other.args());
        want.push("-vnc".into());
        assert_eq!(without_nic(&argv, "fa163e000001"), want);
        assert_eq!(without_nic(&want, "fa163e000001"), want, "idempotent");
    }

    #[test]
    fn oem_strings_table() {
        let base = spec().nics.remove(0);
        let with = |f: &dyn Fn(&mut NicSpec)| {
            let mut n = base.clone();
            f(&mut n);
            nic_oem_string(&n)
        };
        let cases = [
            (
                with(&|n| n.ipv4 = Some("10.0.0.5".into())),
                "nimbus-nic fa:16:3e:00:00:01 dhcp",
            ),
            (
                with(&|n| {
                    n.dhcp = false;
                    n.ipv4 = Some("10.2.0.5".into());
                    n.ipv4_prefix = Some(24);
                }),
                "nimbus-nic fa:16:3e:00:00:01 static ip4=10.2.0.5/24",
            ),
            (
                with(&|n| {
                    n.dhcp = false;
                    n.ipv4 = Some("10.2.0.5".into());
                    n.ipv4_prefix = Some(24);
                    n.gateway = Some("10.2.0.1".into());
                    n.ipv6 = Some("2001:db8::f816:3eff:fe00:1".into());
                }),
                "nimbus-nic fa:16:3e:00:00:01 static ip4=10.2.0.5/24 gw4=10.2.0.1 ip6=2001:db8::f816:3eff:fe00:1/64",
            ),
            (with(&|_| {}), "nimbus-nic fa:16:3e:00:00:01 none"),
            (
                with(&|n| n.mac = "FA:16:3E:00:00:01".into()),
                "nimbus-nic fa:16:3e:00:00:01 none",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
        assert!(has_pcie_root_ports("q35") && has_pcie_root_ports("pc-q35-10.0"));
        assert!(!has_pcie_root_ports("pc") && !has_pcie_root_ports("microvm"));
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
