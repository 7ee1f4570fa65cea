import json

import pytest

from scripts import services


def test_neo4j_passwords_never_look_like_an_option():
    # neo4j-admin refused a password starting with '-' (picocli read it as an option)
    assert not [p for p in (services.neo4j_password() for _ in range(2000)) if p.startswith("-")]


# The pages' JavaScript libraries (npm ci, copied into static/vendor/) ------------------------

def _fake_node_modules(root):
    """A node_modules tree holding every file VENDOR_FILES copies, each naming itself."""
    for src in services.VENDOR_FILES:
        path = root / src
        if src.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            (path / "marker-icon.png").write_bytes(b"\x89PNG " + src.encode())
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"// {src}\n")
    return root


def test_vendor_files_are_copied_stamped_and_swapped_in_whole(tmp_path, monkeypatch):
    vendor = tmp_path / "static" / "vendor"
    monkeypatch.setattr(services, "VENDOR_DIR", vendor)
    vendor.mkdir(parents=True)
    (vendor / "stale.js").write_text("from an older lock file")
    assert not services.assets_installed()

    services._copy_vendor_files(_fake_node_modules(tmp_path / "node_modules"))

    assert services.assets_installed()
    assert (vendor / "cytoscape" / "cytoscape.min.js").read_text() == (
        "// cytoscape/dist/cytoscape.min.js\n")
    assert (vendor / "leaflet" / "images" / "marker-icon.png").read_bytes().startswith(b"\x89PNG")
    assert not (vendor / "stale.js").exists()  # the old copy was replaced, not merged
    assert not vendor.with_name("vendor.partial").exists()
    assert not vendor.with_name("vendor.old").exists()
    # a new package-lock.json makes the copy out of date
    monkeypatch.setattr(services, "_lock_digest", lambda: "0" * 64)
    assert not services.assets_installed()


def test_a_missing_built_file_fails_and_leaves_the_served_copy_alone(tmp_path, monkeypatch):
    vendor = tmp_path / "static" / "vendor"
    monkeypatch.setattr(services, "VENDOR_DIR", vendor)
    modules = _fake_node_modules(tmp_path / "node_modules")
    services._copy_vendor_files(modules)
    (modules / "chart.js" / "dist" / "chart.umd.min.js").unlink()
    with pytest.raises(services.ServiceError, match="chart.umd.min.js"):
        services._copy_vendor_files(modules)
    assert services.assets_installed()  # the earlier, complete copy is still served
    assert (vendor / "chart.js" / "chart.umd.min.js").exists()


def test_every_vendored_package_is_pinned_in_the_lock_file():
    lock = json.loads((services.REPO / "package-lock.json").read_text())
    pinned = {name.removeprefix("node_modules/") for name in lock["packages"] if name}
    needed = {src.split("/")[0] for src in services.VENDOR_FILES}
    assert needed <= pinned
    top = lock["packages"][""]["dependencies"]
    assert {"cytoscape", "cytoscape-fcose", "leaflet", "chart.js"} <= set(top)
    # exact versions, so `npm ci` installs what was tested
    assert all(v[0].isdigit() for v in top.values())
    assert "assets" in services.SERVICES and "assets" in services.INSTALLERS
