"""python-novaclient 18.13 (its Python API), at the microversion it negotiates: its own
maximum, 2.96, which is also Nimbus's."""

import novaclient
import pytest
from keystoneauth1 import loading, session
from novaclient import api_versions, exceptions
from novaclient import client as nova_client

from conftest import wait_for


@pytest.fixture(scope="module")
def nova(nimbus):
    a = nimbus.auth
    auth = loading.get_plugin_loader("password").load_from_options(
        auth_url=a["auth_url"],
        username=a["username"],
        password=a["password"],
        project_name=a["project_name"],
        user_domain_name=a["user_domain_name"],
        project_domain_name=a["project_domain_name"],
    )
    sess = session.Session(auth=auth)
    probe = nova_client.Client("2.1", session=sess, region_name=nimbus.region)
    version = api_versions.discover_version(probe, api_versions.APIVersion("2.latest"))
    return nova_client.Client(version, session=sess, region_name=nimbus.region)


def test_negotiates_2_96(nova):
    assert nova.api_version == api_versions.APIVersion("2.96"), nova.api_version.get_string()
    assert novaclient.API_MAX_VERSION == api_versions.APIVersion("2.96")


def test_flavors(nova):
    flavors = {f.name: f for f in nova.flavors.list()}
    assert "m1.tiny" in flavors
    tiny = nova.flavors.get("1")
    assert (tiny.name, tiny.vcpus, tiny.ram, tiny.disk) == ("m1.tiny", 1, 512, 1)
    assert tiny.description is None  # 2.55
    assert tiny.get_keys() == {}  # 2.61: extra_specs inline


def test_unknown_server_is_404(nova):
    with pytest.raises(exceptions.NotFound):
        nova.servers.get("6a5d7f5e-0000-4000-8000-000000000000")


@pytest.mark.glance
def test_boot_list_show_delete(nova, cirros):
    server = nova.servers.create(
        "nova-vm", cirros, "1", nics="auto", meta={"via": "novaclient"}, description="booted by novaclient"
    )
    try:
        wait_for("nova-vm ACTIVE", lambda: nova.servers.get(server.id).status == "ACTIVE")
        names = {s.name: s for s in nova.servers.list()}
        assert names["nova-vm"].id == server.id
        assert names["nova-vm"].flavor["original_name"] == "m1.tiny"  # 2.47 embedded flavor
        shown = nova.servers.get(server.id)
        assert shown.metadata == {"via": "novaclient"}
        assert shown.description == "booted by novaclient"
        assert shown.pinned_availability_zone is None  # 2.96
        assert shown.locked is False and shown.locked_reason is None
        assert nova.servers.list(search_opts={"name": "^nova-vm$"})[0].id == server.id
    finally:
        nova.servers.delete(server)
    wait_for("nova-vm gone", lambda: _gone(nova, server.id))


def _gone(nova, sid):
    try:
        nova.servers.get(sid)
        return False
    except exceptions.NotFound:
        return True
