"""openstacksdk 4.22 (the Python API: `openstack.connect(cloud=...)`)."""

import hashlib

import pytest

from conftest import wait_for


def test_compute_microversion_negotiated(sdk):
    # The SDK reads min/max from GET /compute/v2.1 and settles on min(its max, ours).
    v = sdk.compute.get_endpoint_data().max_microversion
    assert str(v) in ("(2, 96)", "2.96"), v
    resp = sdk.compute.get("/servers", microversion="2.96")
    assert resp.status_code == 200
    assert resp.headers["OpenStack-API-Version"] == "compute 2.96"
    assert "OpenStack-API-Version" in resp.headers["Vary"]


def test_flavors(sdk):
    flavors = {f.name: f for f in sdk.compute.flavors()}
    assert {"m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"} <= set(flavors), sorted(flavors)
    tiny = sdk.compute.find_flavor("m1.tiny", ignore_missing=False)
    assert (tiny.id, tiny.vcpus, tiny.ram, tiny.disk, tiny.is_public) == ("1", 1, 512, 1, True)
    got = sdk.compute.get_flavor("1")
    assert got.name == "m1.tiny" and got.extra_specs == {}, got
    # Flavors paging: limit=2 returns everything by following flavors_links.
    paged = [f.id for f in sdk.compute.flavors(limit=2)]
    assert sorted(paged) == sorted(f.id for f in flavors.values()), paged


def test_identity_projects_and_users(sdk, nimbus):
    me = sdk.identity.get_user(sdk.current_user_id)
    assert me.name == "admin"
    assert sdk.current_project.name


@pytest.mark.glance
def test_images(sdk, cirros, image_file):
    assert cirros in {i.id for i in sdk.image.images()}
    data = image_file.read_bytes()
    img = sdk.image.create_image(name="sdk-image", data=data, disk_format="raw", container_format="bare")
    try:
        img = sdk.image.get_image(img.id)
        assert img.status == "active" and img.size == len(data), img
        assert img.checksum == hashlib.md5(data).hexdigest()
        assert sdk.image.download_image(img).content == data
        assert [i.id for i in sdk.image.images(name="sdk-image")] == [img.id]
    finally:
        sdk.image.delete_image(img)
    assert not list(sdk.image.images(name="sdk-image"))


def _create(sdk, name, image, **kw):
    return sdk.compute.create_server(name=name, image_id=image, flavor_id="1", networks="auto", **kw)


@pytest.mark.glance
def test_server_lifecycle(sdk, cirros):
    srv = _create(sdk, "sdk-vm", cirros, metadata={"a": "1"})
    assert srv.admin_password, "create returns adminPass"
    srv = sdk.compute.wait_for_server(srv, status="ACTIVE", wait=60, interval=0.2)
    assert srv.status == "ACTIVE" and srv.progress == 100
    got = sdk.compute.get_server(srv.id)
    assert got.name == "sdk-vm" and got.image.id == cirros and got.flavor.original_name == "m1.tiny"
    assert got.metadata == {"a": "1"}

    sdk.compute.set_server_metadata(srv, b="2")
    assert sdk.compute.get_server_metadata(srv).metadata == {"a": "1", "b": "2"}
    sdk.compute.delete_server_metadata(srv, ["a"])
    assert sdk.compute.get_server(srv.id).metadata == {"b": "2"}

    # wait_for_server returns at once if the object it is given already has the status,
    # so hand it the server as it is right after each action.
    sdk.compute.reboot_server(srv, "SOFT")
    rebooting = sdk.compute.get_server(srv.id)
    assert rebooting.status == "REBOOT" and rebooting.task_state == "rebooting", rebooting
    sdk.compute.wait_for_server(rebooting, status="ACTIVE", wait=60, interval=0.2)

    sdk.compute.stop_server(srv)
    stopping = sdk.compute.get_server(srv.id)
    assert stopping.task_state == "powering-off", stopping
    stopped = sdk.compute.wait_for_server(stopping, status="SHUTOFF", wait=60, interval=0.2)
    assert stopped.power_state == 4 and stopped.vm_state == "stopped", stopped
    sdk.compute.start_server(srv)
    sdk.compute.wait_for_server(sdk.compute.get_server(srv.id), status="ACTIVE", wait=60, interval=0.2)

    actions = [a.action for a in sdk.compute.server_actions(srv)]
    assert {"create", "reboot", "stop", "start"} <= set(actions), actions

    sdk.compute.delete_server(srv)
    sdk.compute.wait_for_delete(srv, wait=60, interval=0.2)
    assert sdk.compute.find_server(srv.id) is None


@pytest.mark.glance
def test_servers_paging_follows_links(sdk, cirros):
    made = [_create(sdk, f"page-{i}", cirros) for i in range(5)]
    try:
        first = sdk.compute.get("/servers?limit=2&name=^page-").json()
        assert len(first["servers"]) == 2 and first["servers_links"][0]["rel"] == "next", first
        ids = [s.id for s in sdk.compute.servers(limit=2, name="^page-")]
        assert sorted(ids) == sorted(s.id for s in made), ids
        detailed = list(sdk.compute.servers(details=True, limit=2, name="^page-"))
        assert len({s.id for s in detailed}) == 5
    finally:
        for s in made:
            sdk.compute.delete_server(s)
        for s in made:
            sdk.compute.wait_for_delete(s, wait=60, interval=0.2)


@pytest.mark.glance
def test_injected_crash(sdk, cirros):
    srv = _create(sdk, "sdk-crash", cirros, metadata={"nimbus:fault": "crash-after:1s"})
    sdk.compute.wait_for_server(srv, status="ACTIVE", wait=60, interval=0.2)
    wait_for("crashed server to be SHUTOFF", lambda: sdk.compute.get_server(srv.id).status == "SHUTOFF", 30)
    sdk.compute.delete_server(srv)
    sdk.compute.wait_for_delete(srv, wait=60, interval=0.2)
