//! SQLite implementation of [`crate::NetworkStore`].

use super::{SqliteStore, db_err, is_unique_violation, query_doc, query_docs, to_doc};
use crate::networks::{NetworkStore, NicAllocation};
use async_trait::async_trait;
use nimbus_model::network::{
    FirewallProfile, Ipv4Cidr, MAC_PREFIX, Network, NetworkStatus, Nic, eui64, first_free_ipv4,
    format_mac, parse_ipv6_cidr,
};
use nimbus_model::time::now;
use nimbus_model::{Error, NetworkId, NicId, ProjectId, Result, ServerId};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Transaction};
use std::collections::HashSet;
use std::net::Ipv4Addr;

/// Fill the network name and serial of NICs read from the table.
fn with_network(c: &Connection, mut nics: Vec<Nic>) -> Result<Vec<Nic>> {
    let mut stmt = c
        .prepare_cached("SELECT serial, name FROM networks WHERE id = ?1")
        .map_err(db_err)?;
    // A page of servers has many NICs on few networks (most on `public`): one lookup each.
    let mut seen: std::collections::HashMap<NetworkId, Option<(i64, String)>> =
        std::collections::HashMap::new();
    for n in &mut nics {
        let row = match seen.get(&n.network_id) {
            Some(row) => row.clone(),
            None => {
                let row: Option<(i64, String)> = stmt
                    .query_row([n.network_id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db_err)?;
                seen.insert(n.network_id, row.clone());
                row
            }
        };
        if let Some((serial, name)) = row {
            n.network_serial = serial;
            n.network_name = name;
        }
    }
    Ok(nics)
}

/// NICs of `servers` (by server, then ordinal) with their network's name and serial.
pub(super) fn nics_for(c: &Connection, servers: &[ServerId]) -> Result<Vec<Nic>> {
    let ids: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    let nics = super::docs_in(
        c,
        "SELECT doc FROM nics WHERE server_id IN ({ids}) ORDER BY server_id, ordinal",
        &ids,
    )?;
    with_network(c, nics)
}

/// Attach each server's NICs.
pub(super) fn attach_nics(
    c: &Connection,
    servers: &mut [nimbus_model::server::Server],
) -> Result<()> {
    if servers.is_empty() {
        return Ok(());
    }
    let ids: Vec<ServerId> = servers.iter().map(|s| s.id).collect();
    let mut by_server: std::collections::HashMap<ServerId, Vec<Nic>> =
        std::collections::HashMap::new();
    for n in nics_for(c, &ids)? {
        by_server.entry(n.server_id).or_default().push(n);
    }
    for s in servers.iter_mut() {
        let mut nics = by_server.remove(&s.id).unwrap_or_default();
        nics.sort_by_key(|n| n.ordinal);
        s.nics = nics;
    }
    Ok(())
}

fn insert_nic(tx: &Transaction<'_>, nic: &Nic) -> std::result::Result<(), rusqlite::Error> {
    tx.prepare_cached(
        "INSERT INTO nics (id, server_id, network_id, ordinal, mac, ipv4, doc) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(rusqlite::params![
        nic.id.to_string(),
        nic.server_id.to_string(),
        nic.network_id.to_string(),
        nic.ordinal,
        nic.mac,
        nic.ipv4,
        serde_json::to_string(nic).unwrap_or_default(),
    ])?;
    Ok(())
}

fn allocate(tx: &Transaction<'_>, req: &NicAllocation) -> Result<Nic> {
    let net: Network = query_doc(
        tx,
        "SELECT doc FROM networks WHERE id = ?1 AND deleted = 0",
        [req.network_id.to_string()],
    )?
    .ok_or_else(|| Error::not_found(format!("Network {} could not be found.", req.network_id)))?;
    // Never reuse an ordinal (see migration 0006); NICs made before the counter existed
    // still count through MAX(ordinal). Rolled back with the rest if the allocation fails.
    let ordinal: i64 = tx
        .query_row(
            "SELECT MAX( \
                 COALESCE((SELECT next FROM nic_ordinals WHERE server_id = ?1), 0), \
                 COALESCE((SELECT MAX(ordinal) + 1 FROM nics WHERE server_id = ?1), 0))",
            [req.server_id.to_string()],
            |r| r.get(0),
        )
        .map_err(db_err)?;
    tx.execute(
        "INSERT INTO nic_ordinals (server_id, next) VALUES (?1, ?2) \
         ON CONFLICT (server_id) DO UPDATE SET next = excluded.next",
        rusqlite::params![req.server_id.to_string(), ordinal + 1],
    )
    .map_err(db_err)?;
    let ipv4 = match &net.cidr {
        None => {
            if req.fixed_ip.is_some() {
                return Err(Error::invalid(format!(
                    "Network {} has no IPv4 subnet: no fixed IP can be requested.",
                    net.id
                )));
            }
            None
        }
        Some(cidr) => {
            let cidr =
                Ipv4Cidr::parse(cidr).map_err(|e| Error::internal(format!("stored cidr: {e}")))?;
            let gateway = net
                .gateway
                .as_deref()
                .and_then(|g| g.parse::<Ipv4Addr>().ok());
            let mut stmt = tx
                .prepare_cached("SELECT ipv4 FROM nics WHERE network_id = ?1 AND ipv4 IS NOT NULL")
                .map_err(db_err)?;
            let used: HashSet<Ipv4Addr> = stmt
                .query_map([net.id.to_string()], |r| r.get::<_, String>(0))
                .map_err(db_err)?
                .filter_map(|r| r.ok().and_then(|s| s.parse().ok()))
                .collect();
            match &req.fixed_ip {
                Some(ip) => {
                    let addr: Ipv4Addr = ip
                        .parse()
                        .map_err(|_| Error::invalid(format!("Invalid fixed IP address {ip}.")))?;
                    if !cidr.contains(addr)
                        || Some(addr) == gateway
                        || !cidr.hosts().any(|h| h == addr)
                    {
                        return Err(Error::invalid(format!(
                            "IP address {ip} is not a valid host address of network {}.",
                            net.id
                        )));
                    }
                    if used.contains(&addr) {
                        return Err(Error::conflict(format!(
                            "Unable to complete operation for network {}. The IP address {ip} is in use.",
                            net.id
                        )));
                    }
                    Some(addr.to_string())
                }
                None => Some(
                    first_free_ipv4(&cidr, gateway, &used)
                        .ok_or_else(|| {
                            Error::Exhausted(format!(
                                "No more IP addresses available on network {}.",
                                net.id
                            ))
                        })?
                        .to_string(),
                ),
            }
        }
    };
    // A random MAC under OpenStack's prefix; retried on the (rare) collision.
    for _ in 0..32 {
        let tail: [u8; 3] = rand::thread_rng().r#gen();
        let mac = [
            MAC_PREFIX[0],
            MAC_PREFIX[1],
            MAC_PREFIX[2],
            tail[0],
            tail[1],
            tail[2],
        ];
        let ipv6 = match &net.cidr6 {
            Some(c6) => {
                let (prefix, _) = parse_ipv6_cidr(c6)
                    .map_err(|e| Error::internal(format!("stored cidr6: {e}")))?;
                Some(eui64(prefix, mac).to_string())
            }
            None => None,
        };
        let nic = Nic {
            id: NicId::new(),
            server_id: req.server_id,
            server_serial: req.server_serial,
            ordinal: ordinal as u32,
            network_id: net.id,
            network_name: net.name.clone(),
            network_serial: net.serial,
            mac: format_mac(mac),
            ipv4: ipv4.clone(),
            ipv6,
            firewall: req.firewall,
            created_at: now(),
        };
        match insert_nic(tx, &nic) {
            Ok(()) => return Ok(nic),
            Err(e) if is_unique_violation(&e) && e.to_string().contains("mac") => continue,
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::conflict(format!(
                    "Address conflict on network {}: {e}",
                    net.id
                )));
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Err(Error::internal("could not find a free MAC address"))
}

#[async_trait]
impl NetworkStore for SqliteStore {
    async fn network_create(&self, mut net: Network) -> Result<Network> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO networks (id, project_id, name, shared, public, deleted, generation, doc) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '{}')",
                rusqlite::params![
                    net.id.to_string(),
                    net.project_id.as_ref().map(|p| p.0.clone()),
                    net.name,
                    net.shared,
                    net.public,
                    net.deleted,
                    net.generation
                ],
            )
            .map_err(db_err)?;
            net.serial = tx.last_insert_rowid();
            tx.execute("UPDATE networks SET doc = ?1 WHERE serial = ?2", rusqlite::params![to_doc(&net)?, net.serial])
                .map_err(db_err)?;
            Ok(net)
        })
        .await
    }

    async fn network_get(&self, id: NetworkId) -> Result<Option<Network>> {
        self.read_point(move |c| {
            query_doc(
                c,
                "SELECT doc FROM networks WHERE id = ?1 AND deleted = 0",
                [id.to_string()],
            )
        })
        .await
    }

    async fn network_get_by_serial(&self, serial: i64) -> Result<Option<Network>> {
        self.read_point(move |c| {
            query_doc(c, "SELECT doc FROM networks WHERE serial = ?1", [serial])
        })
        .await
    }

    async fn networks_list(&self, project: Option<ProjectId>) -> Result<Vec<Network>> {
        self.read(move |c| match project {
            Some(p) => query_docs(
                c,
                "SELECT doc FROM networks WHERE deleted = 0 AND (shared = 1 OR project_id = ?1) ORDER BY serial",
                [p.0],
            ),
            None => query_docs(c, "SELECT doc FROM networks WHERE deleted = 0 ORDER BY serial", []),
        })
        .await
    }

    async fn network_update(&self, mut net: Network) -> Result<Option<Network>> {
        self.write(move |tx| {
            let expected = net.generation;
            net.generation += 1;
            let n = tx
                .execute(
                    "UPDATE networks SET name = ?1, shared = ?2, deleted = ?3, generation = ?4, doc = ?5 \
                     WHERE id = ?6 AND generation = ?7",
                    rusqlite::params![net.name, net.shared, net.deleted, net.generation, to_doc(&net)?, net.id.to_string(), expected],
                )
                .map_err(db_err)?;
            Ok((n == 1).then_some(net))
        })
        .await
    }

    async fn network_delete(&self, id: NetworkId) -> Result<()> {
        self.write(move |tx| {
            let mut net: Network = query_doc(
                tx,
                "SELECT doc FROM networks WHERE id = ?1 AND deleted = 0",
                [id.to_string()],
            )?
            .ok_or_else(|| Error::not_found(format!("Network {id} could not be found.")))?;
            let attached: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM nics WHERE network_id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            if attached > 0 {
                return Err(Error::InUse(format!(
                    "Network {id} is in use: {attached} interface(s) are attached."
                )));
            }
            net.deleted = true;
            net.status = NetworkStatus::Deleted;
            net.updated_at = now();
            net.generation += 1;
            tx.execute(
                "UPDATE networks SET deleted = 1, generation = ?1, doc = ?2 WHERE id = ?3",
                rusqlite::params![net.generation, to_doc(&net)?, id.to_string()],
            )
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn nic_allocate(&self, req: NicAllocation) -> Result<Nic> {
        self.write(move |tx| allocate(tx, &req)).await
    }

    async fn nic_get(&self, id: NicId) -> Result<Option<Nic>> {
        self.read_point(move |c| {
            let nic: Option<Nic> =
                query_doc(c, "SELECT doc FROM nics WHERE id = ?1", [id.to_string()])?;
            Ok(with_network(c, nic.into_iter().collect())?.pop())
        })
        .await
    }

    async fn nics_for_servers(&self, servers: Vec<ServerId>) -> Result<Vec<Nic>> {
        self.read(move |c| nics_for(c, &servers)).await
    }

    async fn nics_for_network(&self, network: NetworkId) -> Result<Vec<Nic>> {
        self.read(move |c| {
            let nics = query_docs(
                c,
                "SELECT doc FROM nics WHERE network_id = ?1 ORDER BY rowid",
                [network.to_string()],
            )?;
            with_network(c, nics)
        })
        .await
    }

    async fn nic_delete(&self, id: NicId) -> Result<bool> {
        self.write(move |tx| {
            Ok(tx
                .execute("DELETE FROM nics WHERE id = ?1", [id.to_string()])
                .map_err(db_err)?
                == 1)
        })
        .await
    }

    async fn nics_release(&self, server: ServerId) -> Result<u64> {
        self.write(move |tx| {
            tx.execute(
                "DELETE FROM nic_ordinals WHERE server_id = ?1",
                [server.to_string()],
            )
            .map_err(db_err)?;
            Ok(tx
                .execute(
                    "DELETE FROM nics WHERE server_id = ?1",
                    [server.to_string()],
                )
                .map_err(db_err)? as u64)
        })
        .await
    }

    async fn nic_set_firewall(&self, id: NicId, profile: FirewallProfile) -> Result<Option<Nic>> {
        self.write(move |tx| {
            let nic: Option<Nic> =
                query_doc(tx, "SELECT doc FROM nics WHERE id = ?1", [id.to_string()])?;
            let Some(mut nic) = nic else { return Ok(None) };
            nic.firewall = profile;
            tx.execute(
                "UPDATE nics SET doc = ?1 WHERE id = ?2",
                rusqlite::params![to_doc(&nic)?, id.to_string()],
            )
            .map_err(db_err)?;
            Ok(with_network(tx, vec![nic])?.pop())
        })
        .await
    }
}
