"""``ovfdlr weights``: fetching ImageNet's file over HTTP, importing RadImageNet's, listing."""

from __future__ import annotations

import hashlib
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from ovfdlr.cli import app
from ovfdlr.deep.backbones import KerasResNet50, load_backbone
from ovfdlr.deep.errors import WeightsError
from ovfdlr.deep.store import fetch_imagenet, import_weights, imported, named_file

runner = CliRunner()


@pytest.fixture
def homes(tmp_path, monkeypatch):
    """Empty torchvision and ovfdlr weights folders for one test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("OVFDLR_WEIGHTS", str(tmp_path / "weights"))
    return tmp_path


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over a folder: (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_downloads_into_torchvision_cache_and_checks_the_hash(homes, server, capsys):
    folder, base = server
    payload = np.random.default_rng(0).bytes(3 << 20)  # 3 MiB: the progress bar moves
    digest = hashlib.sha256(payload).hexdigest()
    (folder / f"resnet50-{digest[:8]}.pth").write_bytes(payload)
    path = fetch_imagenet(f"{base}resnet50-{digest[:8]}.pth")
    assert path == homes / "torch" / "hub" / "checkpoints" / f"resnet50-{digest[:8]}.pth"
    assert path.read_bytes() == payload
    assert "100%" in capsys.readouterr().err  # torch.hub's progress bar reached its end

    (folder / "resnet50-deadbeef.pth").write_bytes(payload)  # a name whose hash is wrong
    with pytest.raises(WeightsError, match="nothing was kept"):
        fetch_imagenet(f"{base}resnet50-deadbeef.pth")
    assert not (path.parent / "resnet50-deadbeef.pth").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no partial file

    with pytest.raises(WeightsError, match="HTTP 404"):
        fetch_imagenet(f"{base}resnet50-0676ba61.pth")


def test_fetch_without_network_says_what_to_do(homes):
    import socket

    with socket.socket() as probe:  # a loopback port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = runner.invoke(
        app, ["weights", "fetch", "imagenet", "--url", f"http://127.0.0.1:{port}/r.pth"]
    )
    assert result.exit_code == 1
    assert "cannot download" in result.output
    assert "ovfdlr weights import imagenet FILE" in result.output
    result = runner.invoke(app, ["weights", "fetch", "radimagenet"])
    assert result.exit_code == 1 and "weights import radimagenet" in result.output


@pytest.fixture(scope="module")
def radimagenet_file(tmp_path_factory) -> Path:
    """RadImageNet's published PyTorch conversion form (a seeded, untrained Keras ResNet-50)."""
    torch.manual_seed(5)
    state = {k: v for k, v in KerasResNet50().state_dict().items() if "num_batches" not in k}
    path = tmp_path_factory.mktemp("radimagenet") / "RadImageNet_ResNet50.pth"
    torch.save(state, path)
    return path


def test_import_radimagenet_makes_it_available_by_name(homes, radimagenet_file):
    with pytest.raises(WeightsError, match="no radimagenet weights imported"):
        load_backbone("radimagenet")
    result = runner.invoke(app, ["weights", "import", "radimagenet", str(radimagenet_file)])
    assert result.exit_code == 0, result.output
    record = imported("radimagenet")
    assert record.sha256 == _sha(radimagenet_file)
    assert record.path.parent == homes / "weights"
    assert record.architecture == "keras-resnet50"
    named, explicit = load_backbone("radimagenet"), load_backbone(f"radimagenet:{radimagenet_file}")
    assert named.weights_sha256 == explicit.weights_sha256 == record.sha256
    x = np.random.default_rng(1).random((2, 3, 64, 64), dtype=np.float32)
    with torch.inference_mode():
        a, b = (m.model(torch.from_numpy(x)).numpy() for m in (named, explicit))
    np.testing.assert_array_equal(a, b)

    listed = runner.invoke(app, ["weights", "list"])
    assert listed.exit_code == 0
    line = next(s for s in listed.output.splitlines() if "radimagenet" in s)
    assert f"radimagenet: available {record.path} (SHA-256 {record.sha256})" in line

    # a stored file that changed after its import is refused, naming both digests
    with record.path.open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\0\0\0\1")
    with pytest.raises(WeightsError, match="recorded when the radimagenet weights were imported"):
        named_file("radimagenet")


def test_import_refuses_what_does_not_load_and_records_nothing(homes, tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not weights")
    result = runner.invoke(app, ["weights", "import", "radimagenet", str(junk)])
    assert result.exit_code == 1 and "not a PyTorch weights file" in result.output
    assert imported("radimagenet") is None
    torch.manual_seed(6)
    partial = {"conv1.weight": torch.zeros(64, 3, 7, 7)}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(WeightsError, match="missing tensors"):
        import_weights("radimagenet", tmp_path / "partial.pth")
    # imagenet by import: only torchvision's own files (their SHA-256 prefix) are accepted
    with pytest.raises(WeightsError, match="is not that of torchvision's ImageNet ResNet-50"):
        import_weights("imagenet", junk)
    with pytest.raises(WeightsError, match="unknown weights name 'resnet'"):
        import_weights("resnet", junk)
    assert imported("radimagenet") is None


def test_list_shows_each_arm_of_a_config(homes, tmp_path, radimagenet_file):
    config = tmp_path / "experiment.yaml"
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("case_id,patient_id,image,mask,label,cohort\n")
    config.write_text(
        "manifest: manifest.csv\n"
        "arms:\n"
        "  - {name: rad, deep: {weights: radimagenet}}\n"
        "  - {name: img, deep: {weights: imagenet}}\n"
        "  - {name: untrained, deep: {weights: 'random:0'}}\n"
        "  - {name: plain, radiomics: true}\n"
    )
    import_weights("radimagenet", radimagenet_file)
    result = runner.invoke(app, ["weights", "list", "--config", str(config)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    arms = {s.split(":")[0].strip(): s for s in lines[lines.index(f"arms of {config}:") :]}
    assert arms["rad"].endswith(f"(SHA-256 {_sha(radimagenet_file)})")
    assert "imagenet -> missing: not in torchvision's cache" in arms["img"]
    assert "fetch imagenet" in arms["img"]
    assert arms["untrained"].endswith("random:0 -> untrained (seeded)")
    assert arms["plain"].endswith("no deep features")
    assert "  imagenet: not here; ovfdlr weights fetch imagenet" in result.output
