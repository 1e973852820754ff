//! The agent's network datapath: one userspace L2 switch per network, inside the agent
//! process, reached by QEMU over unix datagram sockets. No root, no tap devices, no
//! bridges, nothing on the host's own network stack.
//!
//! ```text
//!  QEMU (server 1)                          agent process
//!  -netdev dgram,local=<net>/nic-<mac>.sock ─┐
//!                remote=<net>/<network>.sock ├─▶ <net>/<network>.sock ─ Switch (learn,
//!  QEMU (server 2) ... ──────────────────────┘      flood, firewall, DHCP, counters)
//!                                                     └─▶ sendto(<net>/nic-<mac>.sock)
//! ```
//!
//! `<net>` is the driver's `<state_dir>/net` (mode 0700: only the agent's user can reach
//! a switch or a NIC). QEMU binds the NIC sockets, the agent the network sockets. MACs are
//! unique per deployment, so the MAC names a NIC's socket.
//!
//! [`Fabric`] owns the switches. A network's switch exists while at least one NIC of it is
//! plugged; the driver plugs every NIC of every server it knows (running or not) with
//! [`Fabric::sync_server`], so a guest's networking survives an agent restart: QEMU sends
//! with `sendto` to the switch's path, which the new agent binds again. A network's
//! segment spans this host only; guests of one network on different hosts do not see each
//! other (multi-host segments are out of scope).
//!
//! The pure logic lives in [`switch`], [`firewall`], [`dhcp`] and [`frame`]; this module
//! only moves datagrams. Sends never block the switch: a frame for a QEMU whose socket
//! queue is full waits in that port's bounded backlog (see [`switch`]).

pub mod dhcp;
pub mod firewall;
pub mod frame;
pub mod switch;

use firewall::Profile;
use frame::Mac;
use nimbus_model::agent::NicSpec;
use nimbus_model::{Error, Result, ServerId};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use switch::{Counters, PortConfig, SendOutcome, Switch};
use tokio::task::JoinHandle;

/// Largest datagram QEMU's dgram netdev sends (its NET_BUFSIZE).
const MAX_FRAME: usize = 4096 + 65536;
/// How soon a frame waiting for a busy QEMU is retried.
const BACKLOG_RETRY: std::time::Duration = std::time::Duration::from_millis(1);
/// Unix socket paths must fit `sun_path` (108 bytes including the NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Parse a MAC in the controller's `aa:bb:cc:dd:ee:ff` form.
pub fn parse_mac(mac: &str) -> Result<Mac> {
    nimbus_model::network::parse_mac(mac)
        .ok_or_else(|| Error::invalid(format!("Invalid MAC address '{mac}'.")))
}

/// A MAC as 12 lowercase hex digits: the stable name of a NIC's sockets and QEMU ids.
pub fn mac_hex(mac: &Mac) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect()
}

/// Network ids become file names: only `[A-Za-z0-9_-]`, at most 64 characters.
fn check_network_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "Network id '{id}' cannot name a switch socket."
        )))
    }
}

fn parse_ipv4(what: &str, s: &str) -> Result<Ipv4Addr> {
    // Tolerate an `a.b.c.d/n` form: the prefix comes from `ipv4_prefix`.
    let addr = s.split('/').next().unwrap_or(s);
    addr.parse()
        .map_err(|_| Error::invalid(format!("Invalid {what} '{s}'.")))
}

/// The switch's view of a NIC: its MAC, QEMU's socket, its DHCP lease and firewall.
pub fn port_config(nic: &NicSpec, socket: PathBuf, lease_secs: u32) -> Result<PortConfig> {
    let mac = parse_mac(&nic.mac)?;
    let firewall = Profile::parse(&nic.firewall).ok_or_else(|| {
        Error::invalid(format!(
            "Invalid firewall profile '{}' (ENABLED, DISABLED or PROTECTED).",
            nic.firewall
        ))
    })?;
    let lease = match (&nic.ipv4, nic.ipv4_prefix, nic.dhcp) {
        (Some(ip), Some(prefix), true) => Some(dhcp::Lease {
            ip: parse_ipv4("IPv4 address", ip)?,
            prefix: prefix.min(32),
            gateway: nic
                .gateway
                .as_deref()
                .map(|g| parse_ipv4("gateway", g))
                .transpose()?,
            lease_secs,
        }),
        _ => None,
    };
    Ok(PortConfig {
        mac,
        socket,
        dhcp: nic.dhcp,
        lease,
        firewall,
    })
}

/// One network's running switch.
struct Net {
    switch: Arc<Mutex<Switch>>,
    socket: PathBuf,
    task: JoinHandle<()>,
}

impl Drop for Net {
    fn drop(&mut self) {
        // The socket file stays: a later fabric (agent restart) removes and binds it
        // again, and removing it here could remove a newer fabric's socket.
        self.task.abort();
    }
}

#[derive(Default)]
struct State {
    nets: HashMap<String, Net>,
    /// Which (network, MAC) ports each server has plugged.
    owners: HashMap<ServerId, Vec<(String, Mac)>>,
}

/// All switches of one agent.
pub struct Fabric {
    dir: PathBuf,
    lease_secs: u32,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Fabric {
    /// Switch sockets live in `dir` (created 0700: only the agent's user may talk to them).
    pub fn new(dir: PathBuf, lease_secs: u32) -> Result<Fabric> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::internal(format!("create {}: {e}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::internal(format!("chmod {}: {e}", dir.display())))?;
        Ok(Fabric {
            dir,
            lease_secs,
            state: Mutex::new(State::default()),
        })
    }

    pub fn lease_secs(&self) -> u32 {
        self.lease_secs
    }

    /// QEMU's end of a NIC (its `local.path`): bound by QEMU, the switch delivers the
    /// NIC's frames there.
    pub fn nic_socket(&self, mac: &Mac) -> PathBuf {
        self.dir.join(format!("nic-{}.sock", mac_hex(mac)))
    }

    /// The switch socket of a network (what QEMU's `remote.path` names).
    pub fn switch_socket(&self, network_id: &str) -> Result<PathBuf> {
        check_network_id(network_id)?;
        let p = self.dir.join(format!("{network_id}.sock"));
        if p.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(Error::invalid(format!(
                "{} is too long for a unix socket path",
                p.display()
            )));
        }
        Ok(p)
    }

    /// Make the server's plugged ports exactly `ports` (network id, config): new ones are
    /// plugged, changed ones updated in place (counters and flows kept), missing ones
    /// unplugged. A switch is started for a network's first port and stopped after its
    /// last.
    pub fn sync_server(&self, server: ServerId, ports: Vec<(String, PortConfig)>) -> Result<()> {
        let mut st = lock(&self.state);
        let old = st.owners.remove(&server).unwrap_or_default();
        for (net, mac) in &old {
            if !ports.iter().any(|(n, c)| n == net && c.mac == *mac) {
                Self::unplug(&mut st, net, mac);
            }
        }
        let mut plugged = Vec::with_capacity(ports.len());
        let mut result = Ok(());
        for (net, cfg) in ports {
            if !st.nets.contains_key(&net) {
                match self.start_switch(&net) {
                    Ok(n) => {
                        st.nets.insert(net.clone(), n);
                    }
                    Err(e) => {
                        result = Err(e);
                        continue;
                    }
                }
            }
            if let Some(n) = st.nets.get(&net) {
                plugged.push((net.clone(), cfg.mac));
                lock(&n.switch).plug(cfg);
            }
        }
        if !plugged.is_empty() {
            st.owners.insert(server, plugged);
        }
        result
    }

    fn unplug(st: &mut State, net: &str, mac: &Mac) {
        let empty = match st.nets.get(net) {
            Some(n) => {
                let mut sw = lock(&n.switch);
                sw.unplug(mac);
                sw.is_empty()
            }
            None => false,
        };
        if empty && let Some(n) = st.nets.remove(net) {
            let _ = std::fs::remove_file(&n.socket);
            tracing::debug!(network = net, "switch stopped: no ports left");
        }
    }

    /// A port's counters.
    pub fn counters(&self, network_id: &str, mac: &Mac) -> Option<Counters> {
        let st = lock(&self.state);
        let n = st.nets.get(network_id)?;
        lock(&n.switch).counters(mac)
    }

    /// A port's current configuration (for tests and diagnostics).
    pub fn port(&self, network_id: &str, mac: &Mac) -> Option<PortConfig> {
        let st = lock(&self.state);
        let n = st.nets.get(network_id)?;
        lock(&n.switch).config(mac).cloned()
    }

    /// Networks that have a running switch.
    pub fn networks(&self) -> Vec<String> {
        lock(&self.state).nets.keys().cloned().collect()
    }

    fn start_switch(&self, network_id: &str) -> Result<Net> {
        let socket = self.switch_socket(network_id)?;
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| Error::internal("the network fabric needs a tokio runtime"))?;
        // A stale socket from an earlier agent: nobody else binds here (one agent per
        // state dir), so it can go.
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::internal(format!("remove {}: {e}", socket.display()))),
        }
        let io =
            |e: std::io::Error| Error::internal(format!("switch socket {}: {e}", socket.display()));
        let sock = std::os::unix::net::UnixDatagram::bind(&socket).map_err(io)?;
        sock.set_nonblocking(true).map_err(io)?;
        // Sends go through a clone of the descriptor, straight to the kernel: a full
        // receiver answers EAGAIN at once and the frame is dropped. (Sending through tokio
        // would clear the socket's write readiness on EAGAIN, and an unconnected datagram
        // socket may never signal it again.)
        let out = sock.try_clone().map_err(io)?;
        let recv = {
            let _guard = handle.enter();
            tokio::net::UnixDatagram::from_std(sock).map_err(io)?
        };
        let mac = switch_mac(network_id);
        let switch = Arc::new(Mutex::new(Switch::new(mac)));
        let task = handle.spawn(serve(recv, out, switch.clone(), network_id.to_owned()));
        tracing::debug!(network = network_id, socket = %socket.display(), "switch started");
        Ok(Net {
            switch,
            socket,
            task,
        })
    }
}

/// The switch's own MAC: locally administered, stable per network.
fn switch_mac(network_id: &str) -> Mac {
    let h = Sha256::digest(network_id.as_bytes());
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

/// The receive loop of one switch: every datagram goes through [`Switch::ingress`]; while
/// some port has a backlog (its QEMU's queue was full), it is retried every millisecond.
async fn serve(
    sock: tokio::net::UnixDatagram,
    out: std::os::unix::net::UnixDatagram,
    switch: Arc<Mutex<Switch>>,
    network: String,
) {
    let mut buf = vec![0u8; MAX_FRAME];
    let mut send = |dst: &Path, frame: &[u8]| match out.send_to(frame, dst) {
        Ok(_) => SendOutcome::Sent,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => SendOutcome::Full,
        Err(_) => SendOutcome::Absent,
    };
    let mut waiting = false;
    loop {
        // `recv_from` is cancel-safe: losing the race to the retry tick loses no datagram.
        let received = if waiting {
            tokio::select! {
                r = sock.recv_from(&mut buf) => Some(r),
                _ = tokio::time::sleep(BACKLOG_RETRY) => None,
            }
        } else {
            Some(sock.recv_from(&mut buf).await)
        };
        let mut sw = lock(&switch);
        match received {
            Some(Ok((n, from))) => {
                if let Some(path) = from.as_pathname() {
                    sw.ingress(path, &buf[..n], std::time::Instant::now(), &mut send);
                }
            }
            Some(Err(e)) => {
                drop(sw);
                tracing::warn!(%network, error = %e, "switch receive failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            None => {}
        }
        waiting = sw.flush(&mut send);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn nic(mac: &str, net: &str, firewall: &str) -> NicSpec {
        NicSpec {
            id: "p".into(),
            network_id: net.into(),
            mac: mac.into(),
            ipv4: Some("10.0.0.5".into()),
            ipv4_prefix: Some(24),
            gateway: Some("10.0.0.1".into()),
            ipv6: None,
            dhcp: true,
            firewall: firewall.into(),
        }
    }

    #[test]
    fn port_configs_from_nic_specs() {
        let c = port_config(&nic("fa:16:3e:00:00:01", "n", "PROTECTED"), "/x".into(), 60).unwrap();
        assert_eq!(c.firewall, Profile::Protected);
        assert_eq!(c.lease.unwrap().ip, Ipv4Addr::new(10, 0, 0, 5));
        assert!(port_config(&nic("fa:16:3e:00:00", "n", ""), "/x".into(), 60).is_err());
        assert!(port_config(&nic("fa:16:3e:00:00:01", "n", "OPEN"), "/x".into(), 60).is_err());
        let mut static_nic = nic("fa:16:3e:00:00:01", "n", "");
        static_nic.dhcp = false;
        assert!(
            port_config(&static_nic, "/x".into(), 60)
                .unwrap()
                .lease
                .is_none()
        );
        for bad in ["", "../x", "a/b", &"x".repeat(65)] {
            assert!(check_network_id(bad).is_err(), "{bad}");
        }
        assert!(check_network_id("0b6a3f2e-1c9d-4c1e-9a57-3b1f2d4e5f60").is_ok());
    }

    /// Two "guests" (plain datagram sockets) on one network exchange frames through a real
    /// switch; a third on another network hears nothing.
    #[tokio::test]
    async fn datagrams_flow_through_real_switches() {
        let dir = std::env::temp_dir().join(format!(
            "nqf-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let fabric = Fabric::new(dir.join("net"), 60).unwrap();
        let guest = |name: &str| {
            let p = dir.join(name);
            (tokio::net::UnixDatagram::bind(&p).unwrap(), p)
        };
        let (a1, p1) = guest("a1");
        let (a2, p2) = guest("a2");
        let (b1, pb) = guest("b1");
        let cfg = |m: u8, p: &PathBuf| PortConfig {
            mac: [0xfa, 0x16, 0x3e, 0, 0, m],
            socket: p.clone(),
            dhcp: false,
            lease: None,
            firewall: Profile::Disabled,
        };
        let (s1, s2, s3) = (ServerId::new(), ServerId::new(), ServerId::new());
        fabric
            .sync_server(s1, vec![("net-a".into(), cfg(1, &p1))])
            .unwrap();
        fabric
            .sync_server(s2, vec![("net-a".into(), cfg(2, &p2))])
            .unwrap();
        fabric
            .sync_server(s3, vec![("net-b".into(), cfg(3, &pb))])
            .unwrap();
        let sw_a = fabric.switch_socket("net-a").unwrap();
        let sw_b = fabric.switch_socket("net-b").unwrap();
        let arp = frame::build::arp([0xfa, 0x16, 0x3e, 0, 0, 1]);
        a1.send_to(&arp, &sw_a).await.unwrap();
        let mut buf = [0u8; 128];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), a2.recv_from(&mut buf))
            .await
            .expect("a2 hears a1")
            .unwrap();
        assert_eq!(&buf[..n], &arp[..]);
        assert_eq!(from.as_pathname(), Some(sw_a.as_path()));
        assert!(
            tokio::time::timeout(Duration::from_millis(200), b1.recv_from(&mut buf))
                .await
                .is_err(),
            "network B hears nothing of A"
        );
        // B's guest sending to A's switch is a stranger there.
        b1.send_to(&frame::build::arp([0xfa, 0x16, 0x3e, 0, 0, 3]), &sw_a)
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), a2.recv_from(&mut buf))
                .await
                .is_err()
        );
        let mac1 = [0xfa, 0x16, 0x3e, 0, 0, 1];
        assert_eq!(fabric.counters("net-a", &mac1).unwrap().tx_packets, 1);
        let _ = sw_b;
        // Unplugging the last port of a network stops its switch and removes its socket.
        fabric.sync_server(s3, vec![]).unwrap();
        assert!(!fabric.networks().contains(&"net-b".to_owned()));
        assert!(!fabric.switch_socket("net-b").unwrap().exists());
        // A firewall change is a re-sync with a new profile: counters survive.
        let mut c = cfg(1, &p1);
        c.firewall = Profile::Protected;
        fabric.sync_server(s1, vec![("net-a".into(), c)]).unwrap();
        assert_eq!(
            fabric.port("net-a", &mac1).unwrap().firewall,
            Profile::Protected
        );
        assert_eq!(fabric.counters("net-a", &mac1).unwrap().tx_packets, 1);
        drop(fabric);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
