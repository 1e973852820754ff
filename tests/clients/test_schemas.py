"""Nimbus's compute responses checked against tempest 47's response schemas.

Tempest's own service clients make the requests: they send the microversion header
(X-OpenStack-Nova-API-Version), check that the response echoes it, pick the schema module
for that microversion from their `schema_versions_info` tables (v2_1, v2_3, ... v2_96) and
validate status code, headers and body with jsonschema (Draft 4, tempest's format checker).
A failure names the field and the schema that rejected it.

Every microversion at which tempest switches schema is exercised, from "no header" (2.1)
up to 2.100. Those above Nimbus's advertised maximum must be refused with 406.
"""

import contextlib
import uuid

import pytest
from tempest.lib import auth, exceptions
from tempest.lib.common import api_version_request
from tempest.lib.services.compute import base_compute_client
from tempest.lib.services.compute.availability_zone_client import AvailabilityZoneClient
from tempest.lib.services.compute.flavors_client import FlavorsClient
from tempest.lib.services.compute.interfaces_client import InterfacesClient
from tempest.lib.services.compute.keypairs_client import KeyPairsClient
from tempest.lib.services.compute.limits_client import LimitsClient
from tempest.lib.services.compute.quotas_client import QuotasClient
from tempest.lib.services.compute.server_groups_client import ServerGroupsClient
from tempest.lib.services.compute.servers_client import ServersClient
from tempest.lib.services.compute.versions_client import VersionsClient

from conftest import wait_for


def boundaries(schema_versions_info, extra=()):
    """Every microversion where tempest's schema choice changes: each range's ends.
    `None` stands for "no header" (2.1 behaviour)."""
    found = {None}
    for item in schema_versions_info:
        for v in (item["min"], item["max"]):
            if v:
                found.add(v)
    found.update(extra)
    key = lambda v: (0, 0) if v is None else tuple(int(x) for x in v.split("."))
    return sorted(found, key=key)


def mv_id(v):
    return "no-header" if v is None else v


def vt(v):
    return api_version_request.APIVersionRequest(v or "2.1")


@contextlib.contextmanager
def microversion(v):
    base_compute_client.COMPUTE_MICROVERSION = v
    try:
        yield
    finally:
        base_compute_client.COMPUTE_MICROVERSION = None


@pytest.fixture(scope="module")
def auth_provider(nimbus):
    a = nimbus.auth
    creds = auth.KeystoneV3Credentials(
        username=a["username"],
        password=a["password"],
        project_name=a["project_name"],
        user_domain_name=a["user_domain_name"],
        project_domain_name=a["project_domain_name"],
    )
    return auth.KeystoneV3AuthProvider(creds, nimbus.auth_url)


@pytest.fixture(scope="module")
def clients(nimbus, auth_provider):
    def make(cls, **kw):
        return cls(auth_provider, "compute", nimbus.region, **kw)

    class C:
        servers = make(ServersClient)
        flavors = make(FlavorsClient)
        versions = make(VersionsClient)
        keypairs = make(KeyPairsClient)
        limits = make(LimitsClient)
        quotas = make(QuotasClient)
        azs = make(AvailabilityZoneClient)
        groups = make(ServerGroupsClient)
        interfaces = make(InterfacesClient)

    return C


@pytest.fixture(scope="module")
def max_mv(clients):
    doc = clients.versions.get_version_by_url(clients.versions.base_url)
    return vt(doc["version"]["version"])


def supported(v, max_mv):
    return vt(v) <= max_mv


def wait_deleted(servers, sid):
    def gone():
        try:
            servers.show_server(sid)
            return False
        except exceptions.NotFound:
            return True

    wait_for(f"server {sid} to be deleted", gone)


def refused(fn, v):
    """A microversion above our maximum: Nimbus answers 406 (tempest's NotAcceptable)."""
    with microversion(v), pytest.raises(exceptions.NotAcceptable):
        fn()


# ---------------------------------------------------------------- versions


def test_versions(clients, max_mv):
    listed = clients.versions.list_versions()
    ids = {v["id"]: v for v in listed["versions"]}
    assert set(ids) == {"v2.0", "v2.1"}, listed
    one = clients.versions.get_version_by_url(clients.versions.base_url)
    assert one["version"]["id"] == "v2.1" and one["version"]["min_version"] == "2.1"
    assert max_mv >= vt("2.60")


# ---------------------------------------------------------------- flavors


@pytest.mark.parametrize("mv", boundaries(FlavorsClient.schema_versions_info, ["2.96"]), ids=mv_id)
def test_flavors(clients, max_mv, mv):
    c = clients.flavors
    if not supported(mv, max_mv):
        return refused(c.list_flavors, mv)
    with microversion(mv):
        assert any(f["name"] == "m1.tiny" for f in c.list_flavors()["flavors"])
        detail = c.list_flavors(detail=True)["flavors"]
        assert {f["id"] for f in detail} >= {"1", "2", "3", "4", "5"}
        c.show_flavor("1")
        paged = c.list_flavors(detail=True, limit=2)
        assert len(paged["flavors"]) == 2 and paged["flavors_links"][0]["rel"] == "next", paged

        # Admin: create, extra specs, delete.
        fid = f"schema-{uuid.uuid4().hex[:8]}"
        kw = {"description": "by tempest schemas"} if vt(mv) >= vt("2.55") else {}
        made = c.create_flavor(name=fid, id=fid, ram=64, vcpus=1, disk=0, **kw)["flavor"]
        assert made["id"] == fid
        try:
            c.set_flavor_extra_spec(fid, **{"hw:cpu_policy": "shared"})
            assert c.list_flavor_extra_specs(fid)["extra_specs"] == {"hw:cpu_policy": "shared"}
            assert c.show_flavor_extra_spec(fid, "hw:cpu_policy") == {"hw:cpu_policy": "shared"}
            c.update_flavor_extra_spec(fid, "hw:cpu_policy", **{"hw:cpu_policy": "dedicated"})
            shown = c.show_flavor(fid)["flavor"]
            if vt(mv) >= vt("2.61"):
                assert shown["extra_specs"] == {"hw:cpu_policy": "dedicated"}, shown
            else:
                assert "extra_specs" not in shown, shown
            c.unset_flavor_extra_spec(fid, "hw:cpu_policy")
            if vt(mv) >= vt("2.55"):
                c.update_flavor(fid, description="changed")
        finally:
            c.delete_flavor(fid)


# ---------------------------------------------------------------- servers

SERVER_MVS = boundaries(ServersClient.schema_versions_info)


@pytest.fixture(scope="module")
def schema_servers(clients, cirros):
    """An ACTIVE server with metadata and tags, and one in ERROR (injected spawn fault)."""
    s = clients.servers
    with microversion("2.52"):
        ok = s.create_server(
            name="schema-ok",
            imageRef=cirros,
            flavorRef="1",
            networks="auto",
            metadata={"purpose": "schemas"},
            tags=["t1"],
        )["server"]
        bad = s.create_server(
            name="schema-error",
            imageRef=cirros,
            flavorRef="1",
            networks="none",
            metadata={"nimbus:fault": "spawn"},
        )["server"]
    wait_for("schema-ok ACTIVE", lambda: s.show_server(ok["id"])["server"]["status"] == "ACTIVE")
    wait_for("schema-error ERROR", lambda: s.show_server(bad["id"])["server"]["status"] == "ERROR")
    yield ok["id"], bad["id"]
    for sid in (ok["id"], bad["id"]):
        s.delete_server(sid)
    for sid in (ok["id"], bad["id"]):
        wait_deleted(s, sid)


@pytest.mark.glance
@pytest.mark.parametrize("mv", SERVER_MVS, ids=mv_id)
def test_servers(clients, max_mv, schema_servers, mv):
    s = clients.servers
    ok, bad = schema_servers
    if not supported(mv, max_mv):
        return refused(s.list_servers, mv)
    with microversion(mv):
        assert {x["id"] for x in s.list_servers()["servers"]} >= {ok, bad}
        detail = {x["id"]: x for x in s.list_servers(detail=True)["servers"]}
        assert detail[bad]["status"] == "ERROR" and detail[bad]["fault"]["code"] == 500, detail[bad]
        paged = s.list_servers(limit=1)
        assert len(paged["servers"]) == 1 and paged["servers_links"][0]["rel"] == "next", paged
        shown = s.show_server(ok)["server"]
        assert shown["status"] == "ACTIVE"
        s.show_server(bad)
        s.update_server(ok, name="schema-ok")
        s.list_addresses(ok)
        ifs = clients.interfaces.list_interfaces(ok)["interfaceAttachments"]
        assert len(ifs) == 1 and ifs[0]["fixed_ips"], ifs
        clients.interfaces.show_interface(ok, ifs[0]["port_id"])
        assert s.list_volume_attachments(ok)["volumeAttachments"] == []
        s.list_server_metadata(ok)
        s.set_server_metadata_item(ok, "k", {"k": "v"})
        s.show_server_metadata_item(ok, "k")
        s.update_server_metadata(ok, {"k2": "v2"})
        s.delete_server_metadata_item(ok, "k2")
        s.delete_server_metadata_item(ok, "k")
        actions = s.list_instance_actions(ok)["instanceActions"]
        assert actions and actions[-1]["action"] == "create", actions
        s.show_instance_action(ok, actions[0]["request_id"])
        if vt(mv) >= vt("2.26"):
            assert s.list_tags(ok)["tags"] == ["t1"]
            s.check_tag_existence(ok, "t1")
            s.update_tag(ok, "t2")
            s.update_all_tags(ok, ["t1"])


@pytest.mark.glance
@pytest.mark.parametrize("mv", [None, "2.19", "2.37", "2.52", "2.57", "2.74", "2.90", "2.96"], ids=mv_id)
def test_server_create_action_delete(clients, max_mv, cirros, mv):
    s = clients.servers
    if not supported(mv, max_mv):
        return
    kw = {}
    if vt(mv) >= vt("2.19"):
        kw["description"] = "schema create"
    if vt(mv) >= vt("2.37"):
        kw["networks"] = "auto"
    if vt(mv) >= vt("2.52"):
        kw["tags"] = ["a", "b"]
    if vt(mv) >= vt("2.90"):
        kw["hostname"] = "schema-host"
    with microversion(mv):
        created = s.create_server(name=f"schema-create-{mv_id(mv)}", imageRef=cirros, flavorRef="1", **kw)
        sid = created["server"]["id"]
        try:
            wait_for("ACTIVE", lambda: s.show_server(sid)["server"]["status"] == "ACTIVE")
            s.reboot_server(sid, type="SOFT")
            wait_for("ACTIVE after reboot", lambda: s.show_server(sid)["server"]["status"] == "ACTIVE")
            s.stop_server(sid)
            wait_for("SHUTOFF", lambda: s.show_server(sid)["server"]["status"] == "SHUTOFF")
            s.start_server(sid)
            wait_for("ACTIVE after start", lambda: s.show_server(sid)["server"]["status"] == "ACTIVE")
            s.get_console_output(sid, length=10)
        finally:
            s.delete_server(sid)
        wait_deleted(s, sid)


# ---------------------------------------------------------------- keypairs


@pytest.mark.keypairs
@pytest.mark.parametrize("mv", boundaries(KeyPairsClient.schema_versions_info, ["2.10", "2.35", "2.92", "2.96"]), ids=mv_id)
def test_keypairs(clients, max_mv, mv):
    from test_osc import ed25519_public_key

    k = clients.keypairs
    if not supported(mv, max_mv):
        return refused(k.list_keypairs, mv)
    name = f"schema-{uuid.uuid4().hex[:8]}"
    with microversion(mv):
        kw = {"type": "ssh"} if vt(mv) >= vt("2.2") else {}
        k.create_keypair(name=name, public_key=ed25519_public_key(), **kw)
        assert name in {x["keypair"]["name"] for x in k.list_keypairs()["keypairs"]}
        k.show_keypair(name)
        k.delete_keypair(name)


# ---------------------------------------------------------------- limits, quotas, AZs, groups


@pytest.mark.compute_extras
@pytest.mark.parametrize(
    "mv",
    boundaries(LimitsClient.schema_versions_info + QuotasClient.schema_versions_info, ["2.96"]),
    ids=mv_id,
)
def test_limits_quotas_azs(clients, auth_provider, max_mv, mv):
    if not supported(mv, max_mv):
        return refused(clients.limits.show_limits, mv)
    project = auth_provider.auth_data[1]["project"]["id"]
    with microversion(mv):
        absolute = clients.limits.show_limits()["limits"]["absolute"]
        assert absolute["maxTotalInstances"] >= absolute["totalInstancesUsed"] >= 0, absolute
        clients.quotas.show_quota_set(project)
        clients.quotas.show_quota_set(project, detail=True)
        clients.quotas.show_default_quota_set(project)
        zones = clients.azs.list_availability_zones()["availabilityZoneInfo"]
        assert any(z["zoneName"] == "nova" and z["zoneState"]["available"] for z in zones), zones
        clients.azs.list_availability_zones(detail=True)


@pytest.mark.compute_extras
@pytest.mark.parametrize("mv", boundaries(ServerGroupsClient.schema_versions_info, ["2.96"]), ids=mv_id)
def test_server_groups(clients, max_mv, mv):
    g = clients.groups
    if not supported(mv, max_mv):
        return refused(g.list_server_groups, mv)
    with microversion(mv):
        if vt(mv) >= vt("2.64"):
            made = g.create_server_group(name=f"sg-{mv_id(mv)}", policy="anti-affinity")["server_group"]
        else:
            made = g.create_server_group(name=f"sg-{mv_id(mv)}", policies=["anti-affinity"])["server_group"]
        try:
            assert made["id"] in {x["id"] for x in g.list_server_groups()["server_groups"]}
            g.show_server_group(made["id"])
        finally:
            g.delete_server_group(made["id"])
