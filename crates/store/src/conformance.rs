//! The store conformance suite: behaviour every backend must show. Each check is a `pub async
//! fn` taking a fresh, empty store, so a second backend runs the very same functions; the
//! `sqlite_conformance` tests at the bottom show how (one `#[tokio::test]` per check).

use crate::{Claim, ClaimOutcome, GroupConstraint, ServerCreateOutcome, Store};
use nimbus_model::flavor::Flavor;
use nimbus_model::host::{Host, Resources};
use nimbus_model::identity::{Project, Role, RoleAssignment, Token, User};
use nimbus_model::image::{Image, ImageFilter, ImageStatus, Visibility};
use nimbus_model::keypair::KeyPair;
use nimbus_model::operation::{Operation, OperationEvent, OperationState};
use nimbus_model::quota::QuotaSet;
use nimbus_model::server::{
    FlavorSnapshot, Server, ServerFilter, ServerPage, ServerSortKey, SortDir,
};
use nimbus_model::server_group::{GroupPolicy, ServerGroup};
use nimbus_model::state::{PowerState, VmState};
use nimbus_model::time::now;
use nimbus_model::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Every check, by name, for backends that want to loop.
pub const CHECKS: &[&str] = &[
    "servers_round_trip",
    "servers_guarded_update",
    "servers_quota_is_atomic",
    "servers_filters",
    "servers_paging",
    "claims_never_overcommit",
    "claims_honour_groups",
    "operations_lifecycle",
    "flavors_and_access",
    "identity_and_tokens",
    "keypairs_unique_per_user",
    "images_visibility_and_guard",
    "networks_and_nics",
    "nic_allocation_is_atomic",
    "pools_and_volumes",
];

pub fn flavor_snapshot(vcpus: u32, ram_mb: u64) -> FlavorSnapshot {
    FlavorSnapshot {
        id: FlavorId::from("1"),
        name: "m1.tiny".into(),
        vcpus,
        ram_mb,
        disk_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        extra_specs: BTreeMap::new(),
    }
}

/// A server in BUILD for `project`.
pub fn server(project: &str, name: &str) -> Server {
    let t = now();
    Server {
        id: ServerId::new(),
        serial: 0,
        name: name.into(),
        description: None,
        hostname: name.into(),
        project_id: ProjectId::from(project),
        user_id: UserId::from("u1"),
        flavor: flavor_snapshot(1, 512),
        old_flavor: None,
        image_id: Some(ImageId::new()),
        key_name: None,
        key_data: None,
        metadata: BTreeMap::new(),
        tags: Vec::new(),
        security_groups: vec!["default".into()],
        availability_zone: None,
        pinned_availability_zone: None,
        host_id: None,
        host: None,
        vm_state: VmState::Building,
        task_state: Some(nimbus_model::state::TaskState::Scheduling),
        power_state: PowerState::NoState,
        progress: 0,
        locked: false,
        locked_by: None,
        locked_reason: None,
        ha: false,
        disk_pool: None,
        user_data: None,
        personality: Vec::new(),
        config_drive: false,
        access_ipv4: None,
        access_ipv6: None,
        reservation_id: "r-1".into(),
        launch_index: 0,
        server_group: None,
        fault: None,
        created_at: t,
        updated_at: t,
        launched_at: None,
        terminated_at: None,
        deleted_at: None,
        deleted: false,
        generation: 1,
        nics: Vec::new(),
        volumes: Vec::new(),
    }
}

pub fn operation(server: &Server, action: &str) -> Operation {
    let t = now();
    Operation {
        id: OperationId::new(),
        request_id: request_id(),
        server_id: server.id,
        action: action.into(),
        project_id: server.project_id.clone(),
        user_id: server.user_id.clone(),
        state: OperationState::Pending,
        step: 0,
        params: serde_json::Value::Null,
        message: None,
        start_time: t,
        finish_time: None,
        updated_at: t,
        not_before: None,
    }
}

pub fn host(name: &str, vcpus: u32, ram_mb: u64) -> Host {
    Host {
        id: HostId::new(),
        serial: 0,
        name: name.into(),
        address: "local".into(),
        hypervisor_type: "fake".into(),
        hypervisor_version: 1,
        vcpus,
        ram_mb,
        disk_gb: 1000,
        cpu_allocation_ratio: 1.0,
        ram_allocation_ratio: 1.0,
        disk_allocation_ratio: 1.0,
        availability_zone: "nova".into(),
        enabled: true,
        disabled_reason: None,
        up: true,
        forced_down: false,
        last_heartbeat: None,
        capabilities: serde_json::Value::Null,
        created_at: now(),
        updated_at: now(),
    }
}

fn unlimited() -> QuotaSet {
    QuotaSet {
        limits: BTreeMap::new(),
    }
}

async fn create(store: &dyn Store, servers: Vec<Server>) -> Vec<Server> {
    match store
        .servers_create(servers, Vec::new(), unlimited())
        .await
        .unwrap()
    {
        ServerCreateOutcome::Created(s) => s,
        other => panic!("create refused: {other:?}"),
    }
}

pub async fn servers_round_trip(store: Arc<dyn Store>) {
    let a = server("p1", "alpha");
    let op = operation(&a, "create");
    let out = store
        .servers_create(vec![a.clone()], vec![op.clone()], unlimited())
        .await
        .unwrap();
    let ServerCreateOutcome::Created(stored) = out else {
        panic!("not created")
    };
    assert!(stored[0].serial > 0, "serial assigned");
    let got = store.server_get(a.id).await.unwrap().expect("stored");
    assert_eq!(got, stored[0]);
    let by_serial = store
        .server_get_by_serial(stored[0].serial)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_serial.id, a.id);
    assert!(store.server_get(ServerId::new()).await.unwrap().is_none());
    // The create operation landed in the same transaction.
    let ops = store.operations_for_server(a.id).await.unwrap();
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].request_id, op.request_id);
    // Inserting the same id twice is refused and does not clobber.
    let err = store
        .servers_create(vec![a.clone()], Vec::new(), unlimited())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "{err:?}");
}

pub async fn servers_guarded_update(store: Arc<dyn Store>) {
    let s = create(&*store, vec![server("p1", "a")]).await.remove(0);
    let mut first = s.clone();
    first.name = "first".into();
    let mut second = s.clone();
    second.name = "second".into();
    let applied = store
        .server_update(first)
        .await
        .unwrap()
        .expect("first write applies");
    assert_eq!(applied.generation, s.generation + 1);
    assert!(
        store.server_update(second).await.unwrap().is_none(),
        "stale write refused"
    );
    assert_eq!(store.server_get(s.id).await.unwrap().unwrap().name, "first");
    // update + operation is atomic: a stale write inserts no operation.
    let stale = s.clone();
    let op = operation(&s, "reboot");
    assert!(
        store
            .server_update_with_operation(stale, op.clone())
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.operation_get(op.id).await.unwrap().is_none());
    let fresh = store.server_get(s.id).await.unwrap().unwrap();
    assert!(
        store
            .server_update_with_operation(fresh, op.clone())
            .await
            .unwrap()
            .is_some()
    );
    assert!(store.operation_get(op.id).await.unwrap().is_some());
}

pub async fn servers_quota_is_atomic(store: Arc<dyn Store>) {
    let mut quota = QuotaSet::nova_defaults();
    quota.limits.insert("instances".into(), 3);
    let batch: Vec<Server> = (0..2).map(|i| server("p1", &format!("s{i}"))).collect();
    assert!(matches!(
        store
            .servers_create(batch, Vec::new(), quota.clone())
            .await
            .unwrap(),
        ServerCreateOutcome::Created(_)
    ));
    let batch: Vec<Server> = (0..2).map(|i| server("p1", &format!("t{i}"))).collect();
    match store
        .servers_create(batch, Vec::new(), quota.clone())
        .await
        .unwrap()
    {
        ServerCreateOutcome::OverQuota {
            resource,
            limit,
            used,
            requested,
        } => {
            assert_eq!(
                (resource.as_str(), limit, used, requested),
                ("instances", 3, 2, 2)
            );
        }
        other => panic!("expected over quota, got {other:?}"),
    }
    // All or nothing: neither of the refused pair was stored.
    let all = store
        .servers_list(ServerFilter::default(), ServerPage::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    // Another project is counted separately.
    assert!(matches!(
        store
            .servers_create(vec![server("p2", "x")], Vec::new(), quota.clone())
            .await
            .unwrap(),
        ServerCreateOutcome::Created(_)
    ));
    // Concurrent creates cannot together exceed the limit.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        let quota = quota.clone();
        tasks.push(tokio::spawn(async move {
            store
                .servers_create(vec![server("p3", &format!("c{i}"))], Vec::new(), quota)
                .await
        }));
    }
    let mut created = 0;
    for t in tasks {
        if let ServerCreateOutcome::Created(_) = t.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 3);
    let usage = store.compute_usage(ProjectId::from("p3")).await.unwrap();
    assert_eq!((usage.instances, usage.cores, usage.ram), (3, 3, 1536));
}

pub async fn servers_filters(store: Arc<dyn Store>) {
    let t0 = now();
    let mut a = server("p1", "web-1");
    a.tags = vec!["blue".into(), "prod".into()];
    let mut b = server("p1", "web-2");
    b.tags = vec!["blue".into()];
    b.vm_state = VmState::Active;
    b.task_state = None;
    let mut c = server("p2", "db-1");
    c.tags = vec!["prod".into()];
    let stored = create(&*store, vec![a.clone(), b.clone(), c.clone()]).await;
    let names = |v: Vec<Server>| {
        let mut n: Vec<String> = v.into_iter().map(|s| s.name).collect();
        n.sort();
        n
    };
    let list = |f: ServerFilter| {
        let store = store.clone();
        async move { store.servers_list(f, ServerPage::default()).await.unwrap() }
    };
    let p1 = ServerFilter {
        project_id: Some(ProjectId::from("p1")),
        ..Default::default()
    };
    assert_eq!(names(list(p1.clone()).await), ["web-1", "web-2"]);
    assert_eq!(
        names(
            list(ServerFilter {
                name_regex: Some("^web-[2]$".into()),
                ..Default::default()
            })
            .await
        ),
        ["web-2"]
    );
    assert_eq!(
        names(
            list(ServerFilter {
                name_regex: Some("1".into()),
                ..Default::default()
            })
            .await
        ),
        ["db-1", "web-1"],
        "regex is a search, not a full match"
    );
    assert_eq!(
        names(
            list(ServerFilter {
                vm_states: Some(vec![VmState::Active]),
                ..Default::default()
            })
            .await
        ),
        ["web-2"]
    );
    let tags = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        names(
            list(ServerFilter {
                tags: tags(&["blue", "prod"]),
                ..Default::default()
            })
            .await
        ),
        ["web-1"]
    );
    assert_eq!(
        names(
            list(ServerFilter {
                tags_any: tags(&["blue", "prod"]),
                ..Default::default()
            })
            .await
        ),
        ["db-1", "web-1", "web-2"]
    );
    assert_eq!(
        names(
            list(ServerFilter {
                not_tags: tags(&["blue", "prod"]),
                ..Default::default()
            })
            .await
        ),
        ["db-1", "web-2"]
    );
    assert_eq!(
        names(
            list(ServerFilter {
                not_tags_any: tags(&["prod"]),
                ..Default::default()
            })
            .await
        ),
        ["web-2"]
    );
    // Soft delete: hidden by default, visible with include_deleted / changes_since.
    let mut gone = stored.iter().find(|s| s.name == "web-1").unwrap().clone();
    gone.deleted = true;
    gone.vm_state = VmState::Deleted;
    gone.deleted_at = Some(now());
    gone.updated_at = now();
    store.server_update(gone).await.unwrap().unwrap();
    assert_eq!(names(list(p1.clone()).await), ["web-2"]);
    let since = ServerFilter {
        project_id: Some(ProjectId::from("p1")),
        include_deleted: true,
        changes_since: Some(t0),
        ..Default::default()
    };
    assert_eq!(
        names(list(since).await),
        ["web-1", "web-2"],
        "changes-since is >= and sees deletions"
    );
    let only = ServerFilter {
        only_deleted: true,
        ..Default::default()
    };
    assert_eq!(names(list(only).await), ["web-1"]);
}

pub async fn servers_paging(store: Arc<dyn Store>) {
    let mut batch = Vec::new();
    for i in 0..7 {
        let mut s = server("p1", &format!("s{i}"));
        // Same created_at for some, to exercise the tie breaker.
        s.created_at = batch
            .first()
            .map(|f: &Server| f.created_at)
            .unwrap_or(s.created_at);
        batch.push(s);
    }
    create(&*store, batch).await;
    let page = |marker: Option<ServerId>| ServerPage {
        sort: vec![(ServerSortKey::Name, SortDir::Asc)],
        marker,
        limit: Some(3),
    };
    let mut seen = Vec::new();
    let mut marker = None;
    loop {
        let got = store
            .servers_list(ServerFilter::default(), page(marker))
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        marker = Some(got.last().unwrap().id);
        seen.extend(got.into_iter().map(|s| s.name));
    }
    assert_eq!(seen, ["s0", "s1", "s2", "s3", "s4", "s5", "s6"]);
    // Default order: newest first, total even with equal timestamps.
    let all = store
        .servers_list(ServerFilter::default(), ServerPage::default())
        .await
        .unwrap();
    let mut paged = Vec::new();
    let mut marker = None;
    loop {
        let p = ServerPage {
            marker,
            limit: Some(2),
            ..ServerPage::default()
        };
        let got = store
            .servers_list(ServerFilter::default(), p)
            .await
            .unwrap();
        if got.is_empty() {
            break;
        }
        marker = Some(got.last().unwrap().id);
        paged.extend(got);
    }
    assert_eq!(paged, all);
    let err = store
        .servers_list(ServerFilter::default(), page(Some(ServerId::new())))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidRequest(ref m) if m.contains("marker")),
        "{err:?}"
    );
}

pub async fn claims_never_overcommit(store: Arc<dyn Store>) {
    let h = store.host_upsert(host("h1", 10, 10 * 512)).await.unwrap();
    assert!(h.serial > 0);
    // Upsert by name keeps the identity.
    let again = store.host_upsert(host("h1", 10, 10 * 512)).await.unwrap();
    assert_eq!((again.id, again.serial), (h.id, h.serial));
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .claim(Claim {
                    host_id: h.id,
                    server_id: ServerId::new(),
                    resources: Resources {
                        vcpus: 1,
                        ram_mb: 512,
                        disk_gb: 1,
                    },
                    group: None,
                })
                .await
                .unwrap()
        }));
    }
    let mut claimed = 0;
    for t in tasks {
        if t.await.unwrap() == ClaimOutcome::Claimed {
            claimed += 1;
        }
    }
    assert_eq!(claimed, 10);
    let usage = store.host_usages().await.unwrap();
    assert_eq!(
        usage[0].used,
        Resources {
            vcpus: 10,
            ram_mb: 5120,
            disk_gb: 10
        }
    );
    assert_eq!(usage[0].servers, 10);
    // Re-claiming for the same server replaces its claim (resize) rather than adding.
    let s = ServerId::new();
    let small = Resources {
        vcpus: 1,
        ram_mb: 1,
        disk_gb: 0,
    };
    let h2 = store.host_upsert(host("h2", 2, 1024)).await.unwrap();
    let c = |r| Claim {
        host_id: h2.id,
        server_id: s,
        resources: r,
        group: None,
    };
    assert_eq!(store.claim(c(small)).await.unwrap(), ClaimOutcome::Claimed);
    assert_eq!(
        store
            .claim(c(Resources {
                vcpus: 2,
                ram_mb: 1024,
                disk_gb: 0
            }))
            .await
            .unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(store.allocation_get(s).await.unwrap().unwrap().1.vcpus, 2);
    store.release(s).await.unwrap();
    store.release(s).await.unwrap();
    assert!(store.allocation_get(s).await.unwrap().is_none());
    // A disabled host takes nothing.
    let mut off = store.host_get(h2.id).await.unwrap().unwrap();
    off.enabled = false;
    assert!(store.host_update(off).await.unwrap());
    assert_eq!(
        store.claim(c(small)).await.unwrap(),
        ClaimOutcome::NoCapacity
    );
    // A deleted host is gone, and takes nothing either.
    assert!(store.host_delete(h2.id).await.unwrap());
    assert!(!store.host_delete(h2.id).await.unwrap());
    assert!(store.host_get(h2.id).await.unwrap().is_none());
    assert_eq!(
        store.claim(c(small)).await.unwrap(),
        ClaimOutcome::NoCapacity
    );
}

pub async fn claims_honour_groups(store: Arc<dyn Store>) {
    let h1 = store.host_upsert(host("h1", 8, 8192)).await.unwrap();
    let h2 = store.host_upsert(host("h2", 8, 8192)).await.unwrap();
    let group = ServerGroup {
        id: ServerGroupId::new(),
        name: "g".into(),
        policy: GroupPolicy::AntiAffinity,
        max_server_per_host: None,
        project_id: ProjectId::from("p1"),
        user_id: UserId::from("u1"),
        members: Vec::new(),
        created_at: now(),
    };
    store.server_group_create(group.clone()).await.unwrap();
    let mut members = Vec::new();
    for i in 0..3 {
        let mut s = server("p1", &format!("m{i}"));
        s.server_group = Some(group.id);
        members.push(s);
    }
    let members = create(&*store, members).await;
    let r = Resources {
        vcpus: 1,
        ram_mb: 128,
        disk_gb: 1,
    };
    let anti = GroupConstraint::AntiAffinity {
        group: group.id,
        max_per_host: 1,
    };
    let claim = |s: &Server, h: HostId| Claim {
        host_id: h,
        server_id: s.id,
        resources: r,
        group: Some(anti.clone()),
    };
    assert_eq!(
        store.claim(claim(&members[0], h1.id)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store.claim(claim(&members[1], h1.id)).await.unwrap(),
        ClaimOutcome::GroupConflict
    );
    assert_eq!(
        store.claim(claim(&members[1], h2.id)).await.unwrap(),
        ClaimOutcome::Claimed
    );
    assert_eq!(
        store.claim(claim(&members[2], h1.id)).await.unwrap(),
        ClaimOutcome::GroupConflict
    );
    let aff = |s: &Server, h: HostId| Claim {
        host_id: h,
        server_id: s.id,
        resources: r,
        group: Some(GroupConstraint::Affinity(group.id)),
    };
    // Members sit on h1 and h2, so affinity can hold nowhere.
    assert_eq!(
        store.claim(aff(&members[2], h1.id)).await.unwrap(),
        ClaimOutcome::GroupConflict
    );
    let got = store.server_group_get(group.id).await.unwrap().unwrap();
    assert_eq!(got.members.len(), 3);
    assert_eq!(
        store
            .server_groups_list(Some(ProjectId::from("p1")))
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .server_groups_list(Some(ProjectId::from("p2")))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.server_group_delete(group.id).await.unwrap());
    assert!(store.server_group_get(group.id).await.unwrap().is_none());
}

pub async fn operations_lifecycle(store: Arc<dyn Store>) {
    let s = create(&*store, vec![server("p1", "a")]).await.remove(0);
    let op = operation(&s, "reboot");
    store.operation_create(op.clone()).await.unwrap();
    assert_eq!(store.operations_open().await.unwrap().len(), 1);
    // Exactly one of two concurrent claims wins.
    let (a, b) = tokio::join!(store.operation_claim(op.id), store.operation_claim(op.id));
    assert!(a.unwrap() ^ b.unwrap());
    let ev = OperationEvent {
        operation_id: op.id,
        event: "compute_reboot_instance".into(),
        start_time: now(),
        finish_time: None,
        result: None,
        traceback: None,
        host: Some("h1".into()),
        details: None,
    };
    store.event_start(ev.clone()).await.unwrap();
    // A resumed step starts the same event again: still one record.
    store.event_start(ev.clone()).await.unwrap();
    assert_eq!(store.events_for(op.id).await.unwrap().len(), 1);
    let done = OperationEvent {
        finish_time: Some(now()),
        result: Some("Success".into()),
        ..ev
    };
    store.event_finish(done.clone()).await.unwrap();
    let evs = store.events_for(op.id).await.unwrap();
    assert_eq!(evs, vec![done]);
    let mut fin = store.operation_get(op.id).await.unwrap().unwrap();
    assert_eq!(fin.state, OperationState::Running);
    fin.state = OperationState::Succeeded;
    fin.step = 2;
    fin.finish_time = Some(now());
    store.operation_update(fin.clone()).await.unwrap();
    assert_eq!(store.operation_get(op.id).await.unwrap().unwrap(), fin);
    assert!(store.operations_open().await.unwrap().is_empty());
    assert!(
        !store.operation_claim(op.id).await.unwrap(),
        "a finished op cannot be claimed"
    );
    let by_req = store
        .operation_by_request(s.id, op.request_id.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_req.id, op.id);
}

fn flavor(id: &str, name: &str) -> Flavor {
    Flavor {
        id: FlavorId::from(id),
        serial: 0,
        name: name.into(),
        vcpus: 1,
        ram_mb: 512,
        disk_gb: 1,
        ephemeral_gb: 0,
        swap_mb: 0,
        rxtx_factor: 1.0,
        is_public: true,
        disabled: false,
        description: None,
        extra_specs: BTreeMap::new(),
        created_at: now(),
    }
}

pub async fn flavors_and_access(store: Arc<dyn Store>) {
    let f = store.flavor_create(flavor("2", "m1.small")).await.unwrap();
    assert!(f.serial > 0);
    store.flavor_create(flavor("1", "m1.tiny")).await.unwrap();
    let dup_id = store.flavor_create(flavor("1", "other")).await.unwrap_err();
    assert!(
        matches!(dup_id, Error::AlreadyExists(ref m) if m.contains("ID 1")),
        "{dup_id:?}"
    );
    let dup_name = store
        .flavor_create(flavor("9", "m1.tiny"))
        .await
        .unwrap_err();
    assert!(matches!(dup_name, Error::AlreadyExists(ref m) if m.contains("name m1.tiny")));
    let ids: Vec<String> = store
        .flavors_list()
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id.0)
        .collect();
    assert_eq!(ids, ["1", "2"]);
    let mut upd = store
        .flavor_get(FlavorId::from("2"))
        .await
        .unwrap()
        .unwrap();
    upd.extra_specs
        .insert("hw:cpu_policy".into(), "dedicated".into());
    assert!(store.flavor_update(upd.clone()).await.unwrap());
    assert_eq!(
        store
            .flavor_get(FlavorId::from("2"))
            .await
            .unwrap()
            .unwrap(),
        upd
    );
    assert_eq!(
        store
            .flavor_get_by_serial(f.serial)
            .await
            .unwrap()
            .unwrap()
            .id
            .0,
        "2"
    );
    let fid = FlavorId::from("2");
    store
        .flavor_access_add(fid.clone(), ProjectId::from("p1"))
        .await
        .unwrap();
    let again = store
        .flavor_access_add(fid.clone(), ProjectId::from("p1"))
        .await
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyExists(_)));
    assert_eq!(
        store.flavor_access_list(fid.clone()).await.unwrap(),
        vec![ProjectId::from("p1")]
    );
    assert!(
        store
            .flavor_access_remove(fid.clone(), ProjectId::from("p1"))
            .await
            .unwrap()
    );
    assert!(
        !store
            .flavor_access_remove(fid.clone(), ProjectId::from("p1"))
            .await
            .unwrap()
    );
    assert!(store.flavor_delete(fid.clone()).await.unwrap());
    assert!(!store.flavor_delete(fid.clone()).await.unwrap());
    assert!(store.flavor_get(fid).await.unwrap().is_none());
}

pub async fn identity_and_tokens(store: Arc<dyn Store>) {
    let p = Project {
        id: ProjectId(keystone_id()),
        name: "demo".into(),
        domain_id: DomainId::from("default"),
        description: String::new(),
        enabled: true,
    };
    store.project_create(p.clone()).await.unwrap();
    let dup = store
        .project_create(Project {
            id: ProjectId(keystone_id()),
            ..p.clone()
        })
        .await;
    assert!(matches!(dup, Err(Error::AlreadyExists(_))));
    let u = User {
        id: UserId(keystone_id()),
        name: "alice".into(),
        domain_id: DomainId::from("default"),
        password_hash: "x".into(),
        enabled: true,
        default_project_id: Some(p.id.clone()),
        email: None,
    };
    store.user_create(u.clone()).await.unwrap();
    assert_eq!(
        store
            .user_get_by_name("default".into(), "alice".into())
            .await
            .unwrap()
            .unwrap(),
        u
    );
    assert_eq!(
        store
            .project_get_by_name("default".into(), "demo".into())
            .await
            .unwrap()
            .unwrap(),
        p
    );
    let member = store
        .role_create(Role {
            id: RoleId(keystone_id()),
            name: "member".into(),
        })
        .await
        .unwrap();
    let reader = store
        .role_create(Role {
            id: RoleId(keystone_id()),
            name: "reader".into(),
        })
        .await
        .unwrap();
    let a = |r: &Role| RoleAssignment {
        user_id: u.id.clone(),
        project_id: p.id.clone(),
        role_id: r.id.clone(),
    };
    store.assignment_add(a(&member)).await.unwrap();
    store.assignment_add(a(&member)).await.unwrap();
    store.assignment_add(a(&reader)).await.unwrap();
    let names: Vec<String> = store
        .roles_for(u.id.clone(), p.id.clone())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["member", "reader"]);
    assert!(store.assignment_remove(a(&reader)).await.unwrap());
    assert_eq!(
        store
            .roles_for(u.id.clone(), p.id.clone())
            .await
            .unwrap()
            .len(),
        1
    );
    let bogus = RoleAssignment {
        user_id: UserId::from("nobody"),
        ..a(&member)
    };
    assert!(matches!(
        store.assignment_add(bogus).await,
        Err(Error::NotFound(_))
    ));
    let t = now();
    let token = |hash: &str, expires| Token {
        hash: hash.into(),
        user_id: u.id.clone(),
        project_id: Some(p.id.clone()),
        methods: vec!["password".into()],
        roles: vec![member.clone()],
        audit_id: "a".into(),
        issued_at: t,
        expires_at: expires,
    };
    store
        .token_insert(token("live", t + chrono::Duration::hours(1)))
        .await
        .unwrap();
    store
        .token_insert(token("dead", t - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    assert_eq!(store.tokens_purge(t).await.unwrap(), 1);
    assert!(store.token_get("dead".into()).await.unwrap().is_none());
    assert_eq!(
        store.token_get("live".into()).await.unwrap().unwrap().hash,
        "live"
    );
    assert!(store.token_delete("live".into()).await.unwrap());
    assert!(store.token_get("live".into()).await.unwrap().is_none());
    // Deleting a project removes its assignments.
    assert!(store.project_delete(p.id.clone()).await.unwrap());
    assert!(store.assignments_list().await.unwrap().is_empty());
}

pub async fn keypairs_unique_per_user(store: Arc<dyn Store>) {
    let k = |user: &str, name: &str| KeyPair {
        serial: 0,
        name: name.into(),
        user_id: UserId::from(user),
        public_key: "ssh-ed25519 AAAA".into(),
        fingerprint: "aa".into(),
        key_type: "ssh".into(),
        created_at: now(),
    };
    store.keypair_create(k("u1", "key")).await.unwrap();
    store.keypair_create(k("u2", "key")).await.unwrap();
    assert!(matches!(
        store.keypair_create(k("u1", "key")).await,
        Err(Error::AlreadyExists(_))
    ));
    store.keypair_create(k("u1", "a-key")).await.unwrap();
    let names: Vec<String> = store
        .keypairs_list(UserId::from("u1"))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["a-key", "key"]);
    assert!(
        store
            .keypair_delete(UserId::from("u1"), "key".into())
            .await
            .unwrap()
    );
    assert!(
        store
            .keypair_get(UserId::from("u1"), "key".into())
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .keypair_get(UserId::from("u2"), "key".into())
            .await
            .unwrap()
            .is_some()
    );
}

pub async fn images_visibility_and_guard(store: Arc<dyn Store>) {
    let img = |name: &str, owner: &str, vis: Visibility| Image {
        id: ImageId::new(),
        serial: 0,
        name: Some(name.into()),
        status: ImageStatus::Active,
        visibility: vis,
        protected: false,
        owner: Some(ProjectId::from(owner)),
        disk_format: Some("qcow2".into()),
        container_format: Some("bare".into()),
        size: Some(3),
        virtual_size: None,
        checksum: None,
        os_hash_value: Some("h".into()),
        min_disk: 0,
        min_ram: 0,
        tags: vec![],
        properties: BTreeMap::new(),
        created_at: now(),
        updated_at: now(),
        deleted: false,
        deleted_at: None,
        generation: 1,
    };
    let public = store
        .image_create(img("pub", "p1", Visibility::Public))
        .await
        .unwrap();
    let private = store
        .image_create(img("priv", "p1", Visibility::Private))
        .await
        .unwrap();
    store
        .image_create(img("other", "p2", Visibility::Private))
        .await
        .unwrap();
    let names = |v: Vec<Image>| {
        let mut n: Vec<String> = v.into_iter().filter_map(|i| i.name).collect();
        n.sort();
        n
    };
    let p1 = store
        .images_list(ImageFilter::default(), Some(ProjectId::from("p1")))
        .await
        .unwrap();
    assert_eq!(names(p1), ["priv", "pub"]);
    let p2 = store
        .images_list(ImageFilter::default(), Some(ProjectId::from("p2")))
        .await
        .unwrap();
    assert_eq!(names(p2), ["other", "pub"]);
    assert_eq!(
        store
            .images_list(ImageFilter::default(), None)
            .await
            .unwrap()
            .len(),
        3
    );
    let by_ids = ImageFilter {
        ids: Some(vec![public.id, private.id]),
        ..Default::default()
    };
    assert_eq!(store.images_list(by_ids, None).await.unwrap().len(), 2);
    let by_name = ImageFilter {
        name: Some("pub".into()),
        ..Default::default()
    };
    assert_eq!(store.images_list(by_name, None).await.unwrap().len(), 1);
    assert_eq!(store.image_blob_refs("h".into()).await.unwrap(), 3);
    let mut a = public.clone();
    a.name = Some("renamed".into());
    let stale = public.clone();
    assert!(store.image_update(a).await.unwrap().is_some());
    assert!(store.image_update(stale).await.unwrap().is_none());
    let mut del = store.image_get(public.id).await.unwrap().unwrap();
    del.deleted = true;
    del.status = ImageStatus::Deleted;
    store.image_update(del).await.unwrap().unwrap();
    assert_eq!(store.image_blob_refs("h".into()).await.unwrap(), 2);
    // Deleted records stay readable by id.
    assert!(store.image_get(public.id).await.unwrap().unwrap().deleted);
}

pub fn network(
    name: &str,
    cidr: Option<&str>,
    project: Option<&str>,
) -> nimbus_model::network::Network {
    use nimbus_model::network::{Network, NetworkStatus, NetworkType};
    Network {
        id: NetworkId::new(),
        serial: 0,
        name: name.into(),
        kind: NetworkType::MacFiltered,
        cidr: cidr.map(str::to_owned),
        gateway: cidr.map(|c| {
            nimbus_model::network::Ipv4Cidr::parse(c)
                .unwrap()
                .default_gateway()
                .unwrap()
                .to_string()
        }),
        cidr6: None,
        gateway6: None,
        dhcp: true,
        public: project.is_none(),
        shared: project.is_none(),
        project_id: project.map(ProjectId::from),
        status: NetworkStatus::Active,
        created_at: now(),
        updated_at: now(),
        deleted: false,
        generation: 1,
    }
}

pub async fn networks_and_nics(store: Arc<dyn Store>) {
    use crate::NicAllocation;
    use nimbus_model::network::FirewallProfile;
    let public = store
        .network_create(network("public", Some("10.0.0.0/24"), None))
        .await
        .unwrap();
    let mut private = network("mine", Some("192.168.7.0/29"), Some("p1"));
    private.cidr6 = Some("2001:db8:1::/64".into());
    let private = store.network_create(private).await.unwrap();
    let theirs = store
        .network_create(network("theirs", None, Some("p2")))
        .await
        .unwrap();
    assert!(public.serial < private.serial);
    let names =
        |v: Vec<nimbus_model::network::Network>| v.into_iter().map(|n| n.name).collect::<Vec<_>>();
    assert_eq!(
        names(
            store
                .networks_list(Some(ProjectId::from("p1")))
                .await
                .unwrap()
        ),
        ["public", "mine"]
    );
    assert_eq!(
        names(store.networks_list(None).await.unwrap()),
        ["public", "mine", "theirs"]
    );
    let s = create(&*store, vec![server("p1", "a")]).await.remove(0);
    let alloc = |net: NetworkId, ip: Option<&str>| NicAllocation {
        server_id: s.id,
        server_serial: s.serial,
        network_id: net,
        firewall: FirewallProfile::Disabled,
        fixed_ip: ip.map(str::to_owned),
    };
    let n0 = store.nic_allocate(alloc(public.id, None)).await.unwrap();
    assert_eq!(
        (n0.ordinal, n0.ipv4.as_deref()),
        (0, Some("10.0.0.2")),
        "gateway .1 is skipped"
    );
    assert!(n0.mac.starts_with("fa:16:3e:"));
    assert_eq!(n0.cyclades_id(), format!("nic-{}-0", s.serial));
    let n1 = store
        .nic_allocate(alloc(private.id, Some("192.168.7.5")))
        .await
        .unwrap();
    assert_eq!((n1.ordinal, n1.ipv4.as_deref()), (1, Some("192.168.7.5")));
    let v6 = n1.ipv6.clone().unwrap();
    assert!(v6.starts_with("2001:db8:1:0:f816:3eff:fe"), "{v6}");
    // The same fixed address twice, an address outside the pool, the gateway: refused.
    assert!(matches!(
        store
            .nic_allocate(alloc(private.id, Some("192.168.7.5")))
            .await,
        Err(Error::Conflict(_))
    ));
    assert!(matches!(
        store
            .nic_allocate(alloc(private.id, Some("192.168.8.5")))
            .await,
        Err(Error::InvalidRequest(_))
    ));
    assert!(matches!(
        store
            .nic_allocate(alloc(private.id, Some("192.168.7.1")))
            .await,
        Err(Error::InvalidRequest(_))
    ));
    // IP-less network: NIC without addresses.
    let n2 = store.nic_allocate(alloc(theirs.id, None)).await.unwrap();
    assert_eq!((n2.ordinal, n2.ipv4.clone()), (2, None));
    // Pool exhaustion: /29 has 6 hosts, minus the gateway = 5; one is taken.
    let other = create(&*store, vec![server("p1", "b")]).await.remove(0);
    let alloc_other = |net: NetworkId| NicAllocation {
        server_id: other.id,
        server_serial: other.serial,
        network_id: net,
        firewall: FirewallProfile::Enabled,
        fixed_ip: None,
    };
    let mut got = Vec::new();
    for _ in 0..4 {
        let n = store.nic_allocate(alloc_other(private.id)).await.unwrap();
        got.push(n.ipv4.unwrap());
    }
    assert_eq!(
        got,
        ["192.168.7.2", "192.168.7.3", "192.168.7.4", "192.168.7.6"]
    );
    let full = store.nic_allocate(alloc_other(private.id)).await;
    assert!(
        matches!(full, Err(Error::Exhausted(ref m)) if m.contains("No more IP addresses")),
        "{full:?}"
    );
    // The failed allocation took no ordinal.
    let fifth = store.nic_allocate(alloc_other(public.id)).await.unwrap();
    assert_eq!(fifth.ordinal, 4);
    // Reads carry the network name; firewall updates stick.
    let mine = store.nics_for_servers(vec![s.id]).await.unwrap();
    assert_eq!(
        mine.iter()
            .map(|n| n.network_name.as_str())
            .collect::<Vec<_>>(),
        ["public", "mine", "theirs"]
    );
    let fw = store
        .nic_set_firewall(n0.id, FirewallProfile::Protected)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fw.firewall, FirewallProfile::Protected);
    assert_eq!(store.nics_for_network(private.id).await.unwrap().len(), 5);
    // A network in use cannot be deleted; once its NICs are gone it can.
    assert!(matches!(
        store.network_delete(private.id).await,
        Err(Error::InUse(_))
    ));
    assert_eq!(store.nics_release(other.id).await.unwrap(), 5);
    assert!(store.nic_delete(n1.id).await.unwrap());
    assert!(!store.nic_delete(n1.id).await.unwrap());
    store.network_delete(private.id).await.unwrap();
    assert!(store.network_get(private.id).await.unwrap().is_none());
    // By serial a deleted network is still found, marked deleted (Cyclades shows DELETED).
    let gone = store
        .network_get_by_serial(private.serial)
        .await
        .unwrap()
        .expect("deleted network by serial");
    assert!(gone.deleted);
    assert_eq!(gone.status, nimbus_model::network::NetworkStatus::Deleted);
    assert!(matches!(
        store.network_delete(private.id).await,
        Err(Error::NotFound(_))
    ));
    // A released address is reused; a removed NIC's ordinal is not (n1 had 1).
    let again = store.nic_allocate(alloc(public.id, None)).await.unwrap();
    assert_eq!(
        (again.ordinal, again.ipv4.as_deref()),
        (3, Some("10.0.0.3"))
    );
    store.nic_delete(n0.id).await.unwrap();
    let reused = store.nic_allocate(alloc(public.id, None)).await.unwrap();
    assert_eq!(
        (reused.ordinal, reused.ipv4.as_deref()),
        (4, Some("10.0.0.2"))
    );
    // Not even the highest one: removing the last NIC does not free its ordinal.
    let last = store.nic_allocate(alloc(public.id, None)).await.unwrap();
    assert_eq!(last.ordinal, 5);
    assert!(store.nic_delete(last.id).await.unwrap());
    let after_last = store.nic_allocate(alloc(public.id, None)).await.unwrap();
    assert_eq!(after_last.ordinal, 6);
    // Releasing every NIC of a server restarts its ordinals.
    let first = store.nic_allocate(alloc_other(public.id)).await.unwrap();
    assert_eq!(first.ordinal, 0);
    // Renames are guarded.
    let mut renamed = store.network_get(public.id).await.unwrap().unwrap();
    let stale = renamed.clone();
    renamed.name = "internet".into();
    assert!(store.network_update(renamed).await.unwrap().is_some());
    assert!(store.network_update(stale).await.unwrap().is_none());
    assert_eq!(
        store
            .nic_get(reused.id)
            .await
            .unwrap()
            .unwrap()
            .network_name,
        "internet"
    );
}

pub async fn nic_allocation_is_atomic(store: Arc<dyn Store>) {
    use crate::NicAllocation;
    use nimbus_model::network::FirewallProfile;
    let net = store
        .network_create(network("big", Some("10.8.0.0/24"), None))
        .await
        .unwrap();
    let servers = create(
        &*store,
        (0..100).map(|i| server("p1", &format!("s{i}"))).collect(),
    )
    .await;
    let mut tasks = Vec::new();
    for s in servers {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .nic_allocate(NicAllocation {
                    server_id: s.id,
                    server_serial: s.serial,
                    network_id: net.id,
                    firewall: FirewallProfile::Disabled,
                    fixed_ip: None,
                })
                .await
                .unwrap()
        }));
    }
    let mut ips = std::collections::HashSet::new();
    let mut macs = std::collections::HashSet::new();
    for t in tasks {
        let nic = t.await.unwrap();
        assert!(ips.insert(nic.ipv4.unwrap()), "duplicate IP");
        assert!(macs.insert(nic.mac), "duplicate MAC");
    }
    assert_eq!((ips.len(), macs.len()), (100, 100));
}

pub async fn pools_and_volumes(store: Arc<dyn Store>) {
    use nimbus_model::volume::{StoragePool, Volume, VolumeStatus};
    let pool = store
        .pool_create(StoragePool {
            id: PoolId::new(),
            serial: 0,
            name: "fast".into(),
            capacity_gb: 100,
            used_gb: 0,
            backend: "local".into(),
            created_at: now(),
        })
        .await
        .unwrap();
    let dup = StoragePool {
        id: PoolId::new(),
        ..pool.clone()
    };
    assert!(matches!(
        store.pool_create(dup).await,
        Err(Error::AlreadyExists(_))
    ));
    let vol = |name: &str, size: u64, project: &str| Volume {
        id: VolumeId::new(),
        serial: 0,
        name: name.into(),
        size_gb: size,
        pool_id: pool.id,
        pool_name: String::new(),
        status: VolumeStatus::Available,
        attached_to: None,
        device: None,
        project_id: ProjectId::from(project),
        user_id: UserId::from("u1"),
        created_at: now(),
        updated_at: now(),
    };
    let a = store
        .volume_create(vol("a", 60, "p1"), -1, -1)
        .await
        .unwrap();
    assert_eq!(a.pool_name, "fast");
    // The pool has 40 GB left.
    assert!(matches!(
        store.volume_create(vol("b", 41, "p1"), -1, -1).await,
        Err(Error::Conflict(_))
    ));
    let b = store
        .volume_create(vol("b", 40, "p1"), -1, -1)
        .await
        .unwrap();
    assert_eq!(store.pools_list().await.unwrap()[0].used_gb, 100);
    // Quotas: the project has 2 volumes and 100 GB.
    assert!(matches!(
        store.volume_create(vol("c", 0, "p1"), 2, -1).await,
        Err(Error::OverQuota(_))
    ));
    let other = store.volume_create(vol("x", 0, "p2"), 1, 10).await.unwrap();
    // Attach: all or nothing, devices in order, foreign volumes are not found.
    let s = create(&*store, vec![server("p1", "vm")]).await.remove(0);
    let err = store
        .volumes_attach(s.id, ProjectId::from("p1"), vec![a.id, other.id])
        .await;
    assert!(matches!(err, Err(Error::NotFound(_))), "{err:?}");
    assert!(
        store
            .volume_get(a.id)
            .await
            .unwrap()
            .unwrap()
            .attached_to
            .is_none(),
        "nothing attached"
    );
    let att = store
        .volumes_attach(s.id, ProjectId::from("p1"), vec![a.id, b.id])
        .await
        .unwrap();
    assert_eq!(
        att.iter()
            .map(|v| v.device.clone().unwrap())
            .collect::<Vec<_>>(),
        ["vdb", "vdc"]
    );
    assert!(att.iter().all(|v| v.status == VolumeStatus::InUse));
    // Attaching again is a no-op; another server cannot take them.
    assert_eq!(
        store
            .volumes_attach(s.id, ProjectId::from("p1"), vec![a.id])
            .await
            .unwrap()
            .len(),
        1
    );
    let s2 = create(&*store, vec![server("p1", "vm2")]).await.remove(0);
    assert!(matches!(
        store
            .volumes_attach(s2.id, ProjectId::from("p1"), vec![b.id])
            .await,
        Err(Error::InUse(_))
    ));
    // Servers read with their volumes.
    let got = store.server_get(s.id).await.unwrap().unwrap();
    assert_eq!(
        got.volumes
            .iter()
            .map(|v| v.name.as_str())
            .collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(matches!(
        store.volume_delete(a.id).await,
        Err(Error::InUse(_))
    ));
    // Volumes named at create are attached in the insert transaction: a second create
    // naming one of them is refused whole, and nothing of it is stored.
    let spare = store
        .volume_create(vol("spare", 0, "p1"), -1, -1)
        .await
        .unwrap();
    let mut with = server("p1", "with");
    with.volumes = vec![spare.clone()];
    let created = match store
        .servers_create(vec![with], Vec::new(), unlimited())
        .await
        .unwrap()
    {
        ServerCreateOutcome::Created(mut s) => s.remove(0),
        other => panic!("{other:?}"),
    };
    assert_eq!(created.volumes[0].attached_to, Some(created.id));
    let mut rival = server("p1", "rival");
    rival.volumes = vec![spare.clone()];
    let rival_id = rival.id;
    let refused = store
        .servers_create(vec![rival], Vec::new(), unlimited())
        .await;
    assert!(matches!(refused, Err(Error::InUse(_))), "{refused:?}");
    assert!(store.server_get(rival_id).await.unwrap().is_none());
    store.volumes_detach_server(created.id).await.unwrap();
    store.volume_delete(spare.id).await.unwrap();
    assert_eq!(store.volumes_detach_server(s.id).await.unwrap(), 2);
    assert_eq!(store.volumes_detach_server(s.id).await.unwrap(), 0);
    store.volume_delete(a.id).await.unwrap();
    assert!(store.volume_get(a.id).await.unwrap().is_none());
    assert_eq!(store.pools_list().await.unwrap()[0].used_gb, 40);
    assert_eq!(
        store
            .volumes_list(Some(ProjectId::from("p1")))
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(store.volumes_list(None).await.unwrap().len(), 2);
}

#[cfg(test)]
mod sqlite_conformance {
    use super::*;
    use crate::{ServerStore, SqliteStore};

    async fn fresh_file() -> (Arc<dyn Store>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("nimbus-store-{}", uuid::Uuid::new_v4()));
        let path = dir.join("nimbus.db");
        let store = SqliteStore::open(path.to_str().unwrap()).await.unwrap();
        (Arc::new(store), dir)
    }

    macro_rules! sqlite_checks {
        ($($check:ident),+ $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    // Every check runs on a file database (the production shape: WAL, reader
                    // pool) and on an in-memory one.
                    let (store, dir) = fresh_file().await;
                    super::$check(store).await;
                    let _ = std::fs::remove_dir_all(dir);
                    super::$check(Arc::new(SqliteStore::memory().await.unwrap())).await;
                }
            )+
            #[test]
            fn every_check_is_run() {
                let ran: &[&str] = &[$(stringify!($check)),+];
                assert_eq!(ran, CHECKS);
            }
        };
    }

    sqlite_checks!(
        servers_round_trip,
        servers_guarded_update,
        servers_quota_is_atomic,
        servers_filters,
        servers_paging,
        claims_never_overcommit,
        claims_honour_groups,
        operations_lifecycle,
        flavors_and_access,
        identity_and_tokens,
        keypairs_unique_per_user,
        images_visibility_and_guard,
        networks_and_nics,
        nic_allocation_is_atomic,
        pools_and_volumes,
    );

    #[tokio::test]
    async fn reopening_keeps_data_and_schema() {
        let (store, dir) = fresh_file().await;
        let s = create(&*store, vec![server("p1", "keep")]).await.remove(0);
        drop(store);
        let again = SqliteStore::open(dir.join("nimbus.db").to_str().unwrap())
            .await
            .unwrap();
        assert_eq!(again.server_get(s.id).await.unwrap().unwrap().name, "keep");
        let _ = std::fs::remove_dir_all(dir);
    }
}
