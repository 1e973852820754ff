"""python-openstackclient 10.5 (`openstack ...`), run as a subprocess exactly as a user would."""

import base64
import hashlib
import uuid

import pytest

from conftest import OSC, wait_for


def props(value):
    """OSC prints properties as a dict (-f json) or as `k='v', ...` depending on the field."""
    if isinstance(value, dict):
        return value
    out = {}
    for part in filter(None, (value or "").split(", ")):
        k, _, v = part.partition("=")
        out[k] = v.strip("'")
    return out


def api_server(sdk, sid):
    """The server as the compute API shows it now (in-process, so polling is cheap: each
    `openstack` run costs a second or more of Python start-up)."""
    r = sdk.compute.get(f"/servers/{sid}", microversion="2.96")
    assert r.status_code == 200, (r.status_code, r.text)
    return r.json()["server"]


def status_of(sdk, sid):
    return api_server(sdk, sid)["status"]


def test_token_issue(osc, nimbus):
    tok = osc.json("token", "issue")
    assert tok["id"], tok
    assert tok["expires"], tok
    assert tok["project_id"] and tok["user_id"], tok
    # The token is real: the identity API validates it.
    assert len(tok["id"]) >= 32


def test_catalog_lists_identity_compute_image(osc):
    services = {e["Type"]: e for e in osc.json("catalog", "list")}
    assert {"identity", "compute", "image"} <= set(services), services


def test_flavor_list(osc):
    flavors = {f["Name"]: f for f in osc.json("flavor", "list")}
    for name in ["m1.nano", "m1.micro", "m1.tiny", "m1.small", "m1.medium", "m1.large", "m1.xlarge"]:
        assert name in flavors, f"default flavor {name} missing: {sorted(flavors)}"
    tiny = flavors["m1.tiny"]
    assert (tiny["ID"], tiny["RAM"], tiny["Disk"], tiny["VCPUs"]) == ("1", 512, 1, 1), tiny
    assert tiny["Is Public"] is True


def test_flavor_show(osc):
    f = osc.json("flavor", "show", "m1.tiny")
    assert f["name"] == "m1.tiny"
    assert f["id"] == "1"
    assert (f["vcpus"], f["ram"], f["disk"]) == (1, 512, 1), f
    assert f["os-flavor-access:is_public"] is True
    # By id too.
    assert osc.json("flavor", "show", "1")["name"] == "m1.tiny"


def test_flavor_show_unknown_fails(osc):
    p = osc.run("flavor", "show", "no-such-flavor", check=False)
    assert p.returncode != 0
    assert "no-such-flavor" in p.stderr, p.stderr


def test_admin_creates_second_project_user_role(osc, nimbus):
    suffix = uuid.uuid4().hex[:8]
    project, user, password = f"p2-{suffix}", f"u2-{suffix}", f"pw-{suffix}"
    p = osc.json("project", "create", "--description", "second project", project)
    assert p["name"] == project and p["id"], p
    assert osc.json("project", "show", project)["id"] == p["id"]
    u = osc.json("user", "create", "--project", project, "--password", password, user)
    assert u["name"] == user and u["id"], u
    roles = {r["Name"]: r["ID"] for r in osc.json("role", "list")}
    assert {"admin", "member", "reader"} <= set(roles), roles
    osc.run("role", "add", "--user", user, "--project", project, "member")
    assignments = osc.json("role", "assignment", "list", "--user", user, "--project", project)
    assert [(a["Role"], a["User"], a["Project"]) for a in assignments] == [(roles["member"], u["id"], p["id"])]

    other = OSC(nimbus, ["--os-username", user, "--os-password", password, "--os-project-name", project])
    tok = other.json("token", "issue")
    assert tok["project_id"] == p["id"] and tok["user_id"] == u["id"], tok
    assert {f["Name"] for f in other.json("flavor", "list")} >= {"m1.tiny"}
    # A member is not an admin.
    denied = other.run("project", "create", f"p3-{suffix}", check=False)
    assert denied.returncode != 0
    assert "403" in denied.stderr or "not authorized" in denied.stderr.lower(), denied.stderr
    wrong = OSC(nimbus, ["--os-username", user, "--os-password", "wrong", "--os-project-name", project])
    bad = wrong.run("token", "issue", check=False)
    assert bad.returncode != 0 and "401" in bad.stderr, bad.stderr


# ---------------------------------------------------------------- keypairs


def ed25519_public_key():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate().public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


@pytest.mark.keypairs
def test_keypair_create_list_delete(osc, tmp_path):
    public = ed25519_public_key() + " test@nimbus"
    f = tmp_path / "id.pub"
    f.write_text(public + "\n")
    kp = osc.json("keypair", "create", "--public-key", str(f), "k1")
    blob = base64.b64decode(public.split()[1])
    fingerprint = ":".join(f"{b:02x}" for b in hashlib.md5(blob).digest())
    assert kp["name"] == "k1", kp
    assert kp["fingerprint"] == fingerprint, kp
    listed = {k["Name"]: k for k in osc.json("keypair", "list")}
    assert listed["k1"]["Fingerprint"] == fingerprint, listed
    assert listed["k1"]["Type"] == "ssh", listed
    shown = osc.json("keypair", "show", "k1")
    assert shown["fingerprint"] == fingerprint
    dup = osc.run("keypair", "create", "--public-key", str(f), "k1", check=False)
    assert dup.returncode != 0 and "409" in dup.stderr, dup.stderr
    osc.run("keypair", "delete", "k1")
    assert "k1" not in {k["Name"] for k in osc.json("keypair", "list")}


# ---------------------------------------------------------------- images and servers


@pytest.mark.glance
def test_image_create(osc, image_file):
    data = image_file.read_bytes()
    img = osc.json(
        "image",
        "create",
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--file",
        str(image_file),
        "osc-image",
    )
    assert img["status"] == "active", img
    assert img["size"] == len(data), img
    assert img["checksum"] == hashlib.md5(data).hexdigest(), img
    assert (img["disk_format"], img["container_format"]) == ("raw", "bare"), img
    assert "osc-image" in {i["Name"] for i in osc.json("image", "list")}
    assert osc.json("image", "show", "osc-image")["id"] == img["id"]
    osc.run("image", "delete", "osc-image")
    assert "osc-image" not in {i["Name"] for i in osc.json("image", "list")}


@pytest.mark.glance
def test_server_lifecycle(osc, sdk, cirros):
    s = osc.json("server", "create", "--flavor", "m1.tiny", "--image", "cirros", "--wait", "vm1")
    assert s["status"] == "ACTIVE", s
    vm = s["id"]
    assert s["name"] == "vm1"

    listed = {x["Name"]: x for x in osc.json("server", "list")}
    assert listed["vm1"]["ID"] == vm and listed["vm1"]["Status"] == "ACTIVE", listed
    assert listed["vm1"]["Image"] == "cirros", listed
    assert listed["vm1"]["Flavor"] == "m1.tiny", listed
    assert listed["vm1"]["Networks"], listed

    shown = osc.json("server", "show", "vm1")
    assert shown["id"] == vm and shown["status"] == "ACTIVE", shown
    assert shown["OS-EXT-STS:vm_state"] == "active" and shown["OS-EXT-STS:power_state"] in ("Running", 1), shown

    osc.run("server", "set", "--property", "k=v", "--property", "owner=tests", "vm1")
    assert api_server(sdk, vm)["metadata"] == {"k": "v", "owner": "tests"}
    osc.run("server", "unset", "--property", "k", "vm1")
    assert api_server(sdk, vm)["metadata"] == {"owner": "tests"}

    osc.run("server", "reboot", "--wait", "vm1")
    assert status_of(sdk, vm) == "ACTIVE"

    osc.run("server", "stop", "vm1")
    wait_for("vm1 SHUTOFF", lambda: status_of(sdk, vm) == "SHUTOFF")
    osc.run("server", "start", "vm1")
    wait_for("vm1 ACTIVE", lambda: status_of(sdk, vm) == "ACTIVE")

    events = osc.json("server", "event", "list", "vm1")
    actions = [e["Action"] for e in events]
    for a in ["create", "reboot", "stop", "start"]:
        assert a in actions, events
    one = osc.json("server", "event", "show", "vm1", events[0]["Request ID"])
    assert one["action"] == events[0]["Action"] and one["request_id"] == events[0]["Request ID"], one

    osc.run("server", "delete", "--wait", "vm1")
    assert "vm1" not in {x["Name"] for x in osc.json("server", "list")}
    assert sdk.compute.get(f"/servers/{vm}").status_code == 404


@pytest.mark.glance
def test_more_server_actions(osc, sdk, cirros):
    """pause, suspend, lock, console log, resize + confirm, rebuild, snapshot."""
    vm = osc.json("server", "create", "--flavor", "m1.tiny", "--image", "cirros", "--wait", "vm2")["id"]
    try:
        for act, status, undo in [("pause", "PAUSED", "unpause"), ("suspend", "SUSPENDED", "resume")]:
            osc.run("server", act, "vm2")
            wait_for(f"vm2 {status}", lambda: status_of(sdk, vm) == status)
            osc.run("server", undo, "vm2")
            wait_for("vm2 ACTIVE", lambda: status_of(sdk, vm) == "ACTIVE")

        osc.run("server", "lock", "--reason", "maintenance", "vm2")
        shown = api_server(sdk, vm)
        assert shown["locked"] is True and shown["locked_reason"] == "maintenance", shown
        osc.run("server", "unlock", "vm2")

        log = osc.run("console", "log", "show", "--lines", "5", "vm2").stdout
        assert 0 < len(log.strip().splitlines()) <= 5, log

        osc.run("server", "resize", "--flavor", "m1.small", "--wait", "vm2")
        assert status_of(sdk, vm) == "VERIFY_RESIZE"
        osc.run("server", "resize", "confirm", "vm2")
        wait_for("vm2 ACTIVE after confirm", lambda: status_of(sdk, vm) == "ACTIVE")
        assert api_server(sdk, vm)["flavor"]["original_name"] == "m1.small"

        osc.run("server", "rebuild", "--image", "cirros", "--wait", "vm2")
        assert status_of(sdk, vm) == "ACTIVE"

        snap = osc.json("server", "image", "create", "--name", "vm2-snap", "--wait", "vm2")
        assert snap["status"] == "active" and snap["name"] == "vm2-snap", snap
        assert props(snap["properties"])["instance_uuid"] == vm, snap
        osc.run("image", "delete", "vm2-snap")
    finally:
        osc.run("server", "delete", "--wait", "vm2")


@pytest.mark.glance
def test_second_project_sees_none_of_admins_servers(osc, nimbus, cirros):
    suffix = uuid.uuid4().hex[:8]
    project, user, password = f"iso-{suffix}", f"iso-u-{suffix}", f"pw-{suffix}"
    osc.run("project", "create", project)
    osc.run("user", "create", "--project", project, "--password", password, user)
    osc.run("role", "add", "--user", user, "--project", project, "member")
    mine = osc.json("server", "create", "--flavor", "m1.tiny", "--image", "cirros", "--wait", "admins-vm")
    try:
        other = OSC(nimbus, ["--os-username", user, "--os-password", password, "--os-project-name", project])
        # `server list` needs the image API even when it has nothing to show.
        assert other.json("server", "list") == []
        hidden = other.run("server", "show", mine["id"], check=False)
        assert hidden.returncode != 0 and "No Server found" in hidden.stderr, hidden.stderr
        # ... and admin does not see the member's server without --all-projects.
        theirs = other.json("server", "create", "--flavor", "m1.tiny", "--image", cirros, "--wait", "members-vm")
        assert theirs["status"] == "ACTIVE", theirs
        assert "members-vm" not in {x["Name"] for x in osc.json("server", "list")}
        everyone = {x["Name"] for x in osc.json("server", "list", "--all-projects")}
        assert {"members-vm", "admins-vm"} <= everyone, everyone
        other.run("server", "delete", "--wait", "members-vm")
    finally:
        osc.run("server", "delete", "--wait", mine["id"])


@pytest.mark.glance
def test_injected_spawn_fault(osc, cirros):
    p = osc.run(
        "server",
        "create",
        "--flavor",
        "m1.tiny",
        "--image",
        "cirros",
        "--property",
        "nimbus:fault=spawn",
        "--wait",
        "broken",
        check=False,
    )
    assert p.returncode != 0, p.stdout
    shown = osc.json("server", "show", "broken")
    assert shown["status"] == "ERROR", shown
    assert "injected" in str(shown.get("fault")), shown
    osc.run("server", "delete", "--wait", "broken")
