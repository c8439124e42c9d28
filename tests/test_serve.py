"""``volseg serve`` as Slicer meets it: a real server subprocess on a free loopback port, driven by MONAI Label's own
clients (the pip package's ``MONAILabelClient`` and the Slicer module's ``MONAILabelLib/client.py``, both from the
``monailabel==0.8.5`` wheel) and by raw HTTP for what no client would send."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import socket
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import requests
import SimpleITK as sitk
from typer.testing import CliRunner

from volseg.cli import app
from volseg.data import io
from volseg.inference.segmenter import ModelInfo
from volseg.serve.auth import Tokens, password_matches, read_auth_file
from volseg.serve.datastore import Datastore, check_id, digest
from volseg.serve.inference_queue import ClientGone, InferenceQueue
from volseg.serve.refusal import RequestRefused
from volseg.serve.warm_models import Request, WarmModel

from . import volseg_server
from .volseg_server import HIPPOCAMPUS_IMAGE, NNUNET_IMAGE, NNUNET_KEY, NNUNET_MODEL, VOLSEG

USER, PASSWORD = "reader", "pancreas-Night-Shift"
ESCAPES = [
    "../escape",
    "../../etc/passwd",
    "/etc/passwd",
    "..\\escape",
    "C:\\Windows\\win.ini",
    "..",
    ".",
    "a/../../b",
    "%2e%2e%2fescape",
    "..%252fescape",
    "x\x00y",
    "line\nbreak",
]


def nifti(path: Path, array: np.ndarray, spacing=(2.0, 2.0, 2.0)) -> Path:
    nib.save(nib.Nifti1Image(array, np.diag([*spacing, 1.0])), path)
    return path


def slow_ct(folder: Path) -> Path:
    """A CT-like volume the tiny nnU-Net takes a couple of seconds over: requests that overlap in time."""
    rng = np.random.default_rng(0)
    return nifti(folder / "slow.nii.gz", rng.integers(-100, 300, (72, 72, 72)).astype(np.int16))


def one_line(response: requests.Response) -> str:
    detail = response.json()["detail"]
    assert "\n" not in detail and 0 < len(detail) < 500, detail
    return detail


def upload(url: str, image_id: str, path: Path, headers=None, name: str | None = None) -> requests.Response:
    with open(path, "rb") as f:
        files = {"file": (name or path.name, f), "params": (None, "{}")}
        return requests.put(f"{url}/datastore/", params={"image": image_id}, files=files, headers=headers, timeout=60)


def infer(url: str, model: str, image_id: str, params: dict | str = "{}", headers=None) -> requests.Response:
    params = params if isinstance(params, str) else json.dumps(params)
    return requests.post(
        f"{url}/infer/{model}",
        params={"image": image_id},
        files={"params": (None, params)},
        headers=headers,
        timeout=120,
    )


def read_label(path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One server for the protocol, bad-input and load tests: the built-in MRI model and a tiny nnU-Net folder."""
    folder = tmp_path_factory.mktemp("serve")
    running = volseg_server.start(
        folder,
        "-m",
        "hippocampus-mri",
        "-m",
        str(NNUNET_MODEL),
        "--datastore",
        str(folder / "store"),
        "--max-upload-mb",
        "1",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with login on and a queue of 2, serving the tiny nnU-Net folder."""
    folder = tmp_path_factory.mktemp("serve-auth")
    result = CliRunner().invoke(app, ["serve-passwd", str(folder / "users"), USER], input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    running = volseg_server.start(
        folder,
        "-m",
        str(NNUNET_MODEL),
        "--datastore",
        str(folder / "store"),
        "--queue",
        "2",
        "--auth-file",
        str(folder / "users"),
        ready_path="/auth/",
    )
    token = requests.post(f"{running.url}/auth/token", data={"username": USER, "password": PASSWORD}).json()
    running.headers = {"Authorization": f"Bearer {token['access_token']}"}
    running.slow = slow_ct(folder)
    assert upload(running.url, "slow", running.slow, running.headers).status_code == 200
    yield running
    running.stop()


# ------------------------------------------------------------------------------------------- the protocol


def test_info_is_what_slicers_module_reads(server):
    info = requests.get(f"{server.url}/info/").json()
    assert "config" not in info  # a top-level config makes the module ask for a server upgrade
    assert set(info["models"]) == {"hippocampus-mri", NNUNET_KEY}
    for model in info["models"].values():
        assert model["type"] == "segmentation" and model["dimension"] == 3 and model["description"]
        assert sorted(model["labels"].values()) == list(range(1, len(model["labels"]) + 1))
        assert model["config"] == {"tta": False}  # both were trained mirrored; one precision each
    assert info["labels"] == ["anterior", "posterior", "liver", "spleen"]
    assert info["trainers"] == info["strategies"] == info["scoring"] == {}


@pytest.mark.parametrize(
    "method,path",
    [
        ("GET", "/train/?check_if_running=true"),
        ("POST", "/activelearning/random"),
        ("PUT", "/session/"),
        ("PUT", "/datastore/label"),
        ("GET", "/auth/"),
        ("GET", "/"),
    ],
)
def test_everything_not_implemented_is_a_404(server, method, path):
    assert requests.request(method, server.url + path).status_code == 404


@pytest.mark.parametrize(
    "model,image,labels",
    [
        ("hippocampus-mri", HIPPOCAMPUS_IMAGE, {1: "anterior", 2: "posterior"}),
        (NNUNET_KEY, NNUNET_IMAGE, {1: "liver", 2: "spleen"}),
    ],
    ids=["hippocampus-mri", "nnunet"],
)
def test_slicers_clients_get_the_labels_volseg_infer_writes(server, tmp_path, model, image, labels):
    from monailabel.client.client import MONAILabelClient

    slicer = volseg_server.slicer_client_module().MONAILabelClient(server.url, tmpdir=str(tmp_path), client_id="t")
    info = slicer.info()
    assert slicer.upload_image(str(image), f"{model} scan") == {"image": f"{model} scan"}
    # what the module sends: its config's first values, then the result format it asks for
    params = {k: v[0] if isinstance(v, list) else v for k, v in info["models"][model]["config"].items()}
    served, answer = slicer.infer(
        model, f"{model} scan", params | {"result_extension": ".nrrd", "result_dtype": "uint8"}
    )
    assert served.endswith(".nrrd")
    names = [name for name, _ in sorted(answer["label_names"].items(), key=lambda item: item[1])]
    assert dict(enumerate(names, 1)) == labels  # value k -> the k-th name, as the module maps them

    model_arg = "hippocampus-mri" if model == "hippocampus-mri" else str(NNUNET_MODEL)
    subprocess.run([str(VOLSEG), "infer", str(image), "--model", model_arg, "-o", str(tmp_path / "cli")], check=True)
    expected, reference = read_label(next((tmp_path / "cli").glob("*_seg.nii.gz")))
    got, image_out = read_label(served)
    assert got.dtype == np.uint8 and np.array_equal(got, expected) and set(np.unique(expected)) == {0, 1, 2}
    assert image_out.GetSize() == reference.GetSize()
    for a, b in [
        (image_out.GetOrigin(), reference.GetOrigin()),
        (image_out.GetSpacing(), reference.GetSpacing()),
        (image_out.GetDirection(), reference.GetDirection()),
    ]:
        assert np.allclose(a, b, atol=1e-5)

    # the pip package's client, asking for MONAI Label's default format (NIfTI)
    file, answer = MONAILabelClient(server.url, tmpdir=str(tmp_path / "pip")).infer(model, f"{model} scan", {})
    assert file.endswith(".nii.gz") and np.array_equal(read_label(file)[0], expected)
    assert answer["seconds"]["predict"] > 0


def test_the_datastore_serves_an_upload_back_byte_for_byte(server):
    assert upload(server.url, "round trip", NNUNET_IMAGE).status_code == 200
    response = requests.get(f"{server.url}/datastore/image", params={"image": "round trip"})
    assert response.status_code == 200 and response.content == NNUNET_IMAGE.read_bytes()
    assert requests.get(f"{server.url}/datastore/image", params={"image": "never sent"}).status_code == 404


# ----------------------------------------------------------------------------------------- bad input


def bad_uploads(folder: Path) -> dict[str, tuple[str, bytes, int]]:
    """Case -> (file name, bytes, status)."""
    whole = HIPPOCAMPUS_IMAGE.read_bytes()
    plain = gzip.decompress(whole)
    rng = np.random.default_rng(1)
    flat = nifti(folder / "flat.nii.gz", rng.normal(size=(40, 40)).astype(np.float32)).read_bytes()
    movie = nifti(folder / "movie.nii.gz", rng.normal(size=(20, 20, 20, 3)).astype(np.float32)).read_bytes()
    return {
        "not an image format": ("notes.txt", b"patient notes", 415),
        "not an image": ("scan.nii.gz", b"this is not a NIfTI file at all", 400),
        "truncated gzip": ("scan.nii.gz", whole[: len(whole) // 2], 400),
        "truncated nifti": ("scan.nii", plain[: len(plain) // 2], 400),
        "2D image": ("flat.nii.gz", flat, 400),
        "4D image": ("movie.nii.gz", movie, 400),
        "garbage nrrd": ("scan.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 9 9\n\n", 400),
    }


@pytest.mark.parametrize("case", list(bad_uploads(Path(tempfile.mkdtemp()))))
def test_a_bad_upload_gets_a_4xx_line_and_the_server_goes_on(server, tmp_path, case):
    name, content, status = bad_uploads(tmp_path)[case]
    response = requests.put(
        f"{server.url}/datastore/", params={"image": f"bad {case}"}, files={"file": (name, content)}, timeout=30
    )
    assert response.status_code == status, response.text
    one_line(response)
    assert requests.get(f"{server.url}/datastore/image", params={"image": f"bad {case}"}).status_code == 404
    assert upload(server.url, "good", HIPPOCAMPUS_IMAGE).status_code == 200
    assert infer(server.url, "hippocampus-mri", "good").status_code == 200


def test_requests_the_server_refuses_get_a_4xx_line(server, tmp_path):
    url = server.url
    air = np.full((30, 30, 30), -1000, dtype=np.int16)
    air[10:20, 10:20, 10:20] = 40
    assert upload(url, "a CT", nifti(tmp_path / "ct.nii.gz", air, (1.0, 1.0, 1.0))).status_code == 200
    assert upload(url, "good", HIPPOCAMPUS_IMAGE).status_code == 200
    refused = infer(url, "hippocampus-mri", "a CT")
    assert refused.status_code == 422 and "looks like CT" in one_line(refused)
    cases = [
        (infer(url, "no-such-model", "good"), 404),
        (infer(url, "hippocampus-mri", "never uploaded"), 404),
        (infer(url, "hippocampus-mri", "good", "not json"), 400),
        (infer(url, "hippocampus-mri", "good", {"tta": "yes"}), 400),
        (infer(url, "hippocampus-mri", "good", {"precision": "int4"}), 400),
        (infer(url, "hippocampus-mri", "good", {"result_extension": ".png"}), 400),
        (requests.put(f"{url}/datastore/", params={"image": "no file"}, files={"params": (None, "{}")}), 400),
        (
            requests.post(
                f"{url}/infer/hippocampus-mri",
                params={"image": "good"},
                files={"file": ("x.nii.gz", HIPPOCAMPUS_IMAGE.read_bytes())},
            ),
            400,
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        one_line(response)
    assert infer(url, "hippocampus-mri", "good").status_code == 200


@pytest.mark.parametrize("image_id", ESCAPES, ids=[repr(e) for e in ESCAPES])
def test_an_id_that_tries_to_leave_the_datastore_is_refused_on_put_and_get(server, image_id):
    put = upload(server.url, image_id, HIPPOCAMPUS_IMAGE)
    got = requests.get(f"{server.url}/datastore/image", params={"image": image_id})
    assert put.status_code == 400 and got.status_code == 400, (put.text, got.text)
    one_line(put), one_line(got)
    store = Path(server.args[server.args.index("--datastore") + 1])
    assert all(len(p.name.split(".")[0]) == 32 for p in store.iterdir() if p.name != ".incoming")


def raw_http(port: int, request: str) -> tuple[int, bytes]:
    """Send a request by hand (what no client library sends) and read the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request.encode("latin-1"))
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1]), answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(
    "length,status", [(f"Content-Length: {3 * 2**20}", 413), ("Transfer-Encoding: chunked", 411)], ids=["413", "411"]
)
def test_an_upload_over_the_limit_is_refused_before_its_body_is_read(server, length, status):
    head = (
        "PUT /datastore/?image=big HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
        f"{length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
    )
    answer, body = raw_http(server.port, head)
    assert answer == status and (b"Content-Length" if status == 411 else b"--max-upload-mb") in body
    assert requests.get(f"{server.url}/datastore/image", params={"image": "big"}).status_code == 404
    assert upload(server.url, "good", HIPPOCAMPUS_IMAGE).status_code == 200


def test_the_log_names_no_patient_and_no_file(server, tmp_path):
    patient = tmp_path / "DOE_JANE_1961.nii.gz"
    patient.write_bytes(HIPPOCAMPUS_IMAGE.read_bytes())
    assert upload(server.url, "DOE^JANE 1961", patient).status_code == 200
    assert infer(server.url, "hippocampus-mri", "DOE^JANE 1961").status_code == 200
    time.sleep(0.2)
    log = server.log_text()
    assert "JANE" not in log and "DOE" not in log and "1961" not in log
    assert f"image {digest('DOE^JANE 1961')[:12]}" in log


# ------------------------------------------------------------------------------------------- load


def test_four_clients_of_ten_requests_over_two_models_get_the_sequential_labels(server, tmp_path):
    client = volseg_server.slicer_client_module().MONAILabelClient
    models = {"hippocampus-mri": HIPPOCAMPUS_IMAGE, NNUNET_KEY: NNUNET_IMAGE}
    expected = {}
    for model, image in models.items():
        assert upload(server.url, f"load {model}", image).status_code == 200
        expected[model] = read_label(client(server.url, tmpdir=str(tmp_path)).infer(model, f"load {model}", {})[0])[0]
    done, rss, lock = [], {}, threading.Lock()

    def one_client(n: int) -> list[bool]:
        folder = tempfile.mkdtemp(dir=tmp_path)
        same = []
        for i in range(10):
            model = list(models)[(n + i) % 2]
            file, _ = client(server.url, tmpdir=folder).infer(model, f"load {model}", {})
            same.append(np.array_equal(read_label(file)[0], expected[model]))
            os.unlink(file)
            with lock:
                done.append(1)
                if len(done) == 10:
                    rss[10] = server.rss_mb()
        return same

    with ThreadPoolExecutor(4) as pool:
        answers = [same for result in pool.map(one_client, range(4)) for same in result]
    rss[40] = server.rss_mb()
    assert len(answers) == 40 and all(answers)
    assert rss[40] <= 1.10 * rss[10], rss


def test_a_full_queue_answers_503_with_retry_after_and_a_retry_succeeds(guarded):
    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(lambda _: infer(guarded.url, NNUNET_KEY, "slow", headers=guarded.headers), range(4)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 200, 503], statuses  # one running, two waiting, one turned away
    busy = next(r for r in responses if r.status_code == 503)
    assert int(busy.headers["Retry-After"]) > 0 and "busy" in one_line(busy)
    assert infer(guarded.url, NNUNET_KEY, "slow", headers=guarded.headers).status_code == 200


def test_a_client_that_leaves_the_queue_gives_up_its_place(guarded):
    url, headers = guarded.url, guarded.headers
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(infer, url, NNUNET_KEY, "slow", {"tta": True}, headers)  # 8 passes: holds the slot
        time.sleep(0.4)
        body = b'--b\r\nContent-Disposition: form-data; name="params"\r\n\r\n{}\r\n--b--\r\n'
        leaving = socket.create_connection(("127.0.0.1", guarded.port))
        leaving.sendall(
            (
                f"POST /infer/{NNUNET_KEY}?image=slow HTTP/1.1\r\nHost: x\r\n{'Authorization: ' + headers['Authorization']}\r\n"
                f"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        waiting = pool.submit(infer, url, NNUNET_KEY, "slow", "{}", headers)
        time.sleep(0.3)  # queue full: the leaving client and the waiting one
        leaving.close()
        time.sleep(0.6)
        replacing = infer(url, NNUNET_KEY, "slow", headers=headers)  # takes the place the leaver gave up
        assert running.result().status_code == waiting.result().status_code == replacing.status_code == 200
    assert f"POST /infer/{NNUNET_KEY} 499" in guarded.log_text()


# ------------------------------------------------------------------------------------------- security


def test_with_login_on_every_endpoint_but_the_login_wants_a_token(guarded):
    url = guarded.url
    for method, path in [
        ("GET", "/info/"),
        ("PUT", "/datastore/?image=a"),
        ("GET", "/datastore/image?image=slow"),
        ("POST", f"/infer/{NNUNET_KEY}?image=slow"),
        ("GET", "/train/"),
        ("GET", "/auth/token/valid"),
    ]:
        for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {PASSWORD}"}):
            assert requests.request(method, url + path, headers=headers).status_code == 401, (method, path, headers)
    assert requests.get(f"{url}/auth/").json() == {"enabled": True}
    wrong = requests.post(f"{url}/auth/token", data={"username": USER, "password": "guess"})
    assert wrong.status_code == 401 and one_line(wrong)

    client = volseg_server.slicer_client_module().MONAILabelClient(url)  # the module's login, as Slicer runs it
    assert client.auth_enabled()
    client.update_auth(client.auth_token(USER, PASSWORD))
    assert client.auth_valid_token() and NNUNET_KEY in client.info()["models"]


def test_listening_beyond_loopback_without_login_is_refused_at_start(tmp_path):
    result = subprocess.run(
        [str(VOLSEG), "serve", "-m", str(NNUNET_MODEL), "--host", "0.0.0.0", "--port", str(volseg_server.free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "--auth-file" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_port_in_use_is_refused_before_the_models_open(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [str(VOLSEG), "serve", "-m", str(NNUNET_MODEL), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=tmp_path,
        )
    assert result.returncode == 2 and f"--port {port}: cannot listen there" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "model" not in result.stdout


def test_the_auth_file_holds_hashes_readable_by_its_owner_only(tmp_path):
    users = tmp_path / "users"
    for password in ("first", "second"):
        result = CliRunner().invoke(app, ["serve-passwd", str(users), USER], input=f"{password}\n{password}\n")
        assert result.exit_code == 0, result.output
    assert "second" not in users.read_text() and stat.S_IMODE(users.stat().st_mode) == 0o600
    stored = read_auth_file(users)[USER]
    assert password_matches("second", stored) and not password_matches("first", stored)
    tokens = Tokens(read_auth_file(users))
    assert tokens.login(USER, "first") is None and tokens.login("nobody", "second") is None
    token = tokens.login(USER, "second")
    assert tokens.valid(f"Bearer {token}") and not tokens.valid(token) and not tokens.valid(f"Bearer {token}x")


# ------------------------------------------------------------------------------------------- faults


def stored_files(store: Path) -> list[str]:
    return sorted(p.name for p in store.rglob("*") if p.is_file())


def test_kill_9_during_an_upload_or_an_inference_leaves_no_partial_file(tmp_path):
    store = tmp_path / "store"
    args = ("-m", str(NNUNET_MODEL), "--datastore", str(store))
    server = volseg_server.start(tmp_path, *args)
    try:
        assert upload(server.url, "earlier", NNUNET_IMAGE).status_code == 200
        assert upload(server.url, "slow", slow_ct(tmp_path)).status_code == 200
        before = stored_files(store)
        assert len(before) == 2
        head = (
            "PUT /datastore/?image=cut HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {4 * 2**20}\r\n\r\n"
            '--b\r\nContent-Disposition: form-data; name="file"; filename="cut.nii.gz"\r\n\r\n'
        )
        with socket.create_connection(("127.0.0.1", server.port)) as s:
            s.sendall(head.encode() + os.urandom(2**20))
            time.sleep(0.3)
            server.kill9()
        server = volseg_server.start(tmp_path, *args)
        assert stored_files(store) == before
        with ThreadPoolExecutor(1) as pool:
            pool.submit(lambda: infer(server.url, NNUNET_KEY, "slow", {"tta": True}))
            time.sleep(1.0)
            server.kill9()
        server = volseg_server.start(tmp_path, *args)
        assert stored_files(store) == before
        served = requests.get(f"{server.url}/datastore/image", params={"image": "earlier"})
        assert served.content == NNUNET_IMAGE.read_bytes()
        assert infer(server.url, NNUNET_KEY, "earlier").status_code == 200
    finally:
        server.stop()


def test_the_datastore_sweeps_what_a_killed_upload_left_and_replaces_an_earlier_upload(tmp_path):
    (tmp_path / ".incoming").mkdir()
    (tmp_path / ".incoming" / "tmp1234.nii.gz").write_bytes(b"half a scan")
    store = Datastore(tmp_path)
    assert not any(store.incoming.iterdir())
    first = store.incoming_file(".nii.gz")
    first.write_bytes(b"one")
    store.add("scan", first, ".nii.gz")
    second = store.incoming_file(".nrrd")
    second.write_bytes(b"two")
    store.add("scan", second, ".nrrd")
    assert store.find("scan").read_bytes() == b"two" and store.count() == 1
    for image_id in ESCAPES + ["", "x" * 300]:
        with pytest.raises(RequestRefused) as refused:
            check_id(image_id)
        assert refused.value.status == 400
    assert check_id("3: CT chest^abdomen (portal)") == "3: CT chest^abdomen (portal)"


def test_the_queue_turns_away_beyond_its_capacity_and_a_leaving_client_frees_its_place():
    async def scenario():
        queue = InferenceQueue(capacity=1)
        release, left = threading.Event(), {"yes": False}

        async def never() -> bool:
            return False

        async def gone() -> bool:
            return left["yes"]

        first = asyncio.create_task(queue.run(release.wait, disconnected=never))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(queue.run(lambda: "second", disconnected=gone))
        await asyncio.sleep(0.05)
        with pytest.raises(RequestRefused) as busy:
            await queue.run(lambda: "third", disconnected=never)
        assert busy.value.status == 503 and busy.value.headers["Retry-After"]
        left["yes"] = True
        with pytest.raises(ClientGone):
            await second
        third = asyncio.create_task(queue.run(lambda: "third", disconnected=never))
        release.set()
        assert await first is True and await third == "third" and queue.waiting == 0

    asyncio.run(scenario())


class RegionEngine:
    """A region-based nnU-Net model's answer, as its segmenter paints it: values of ``regions_class_order``."""

    precision, backend, tta, mirror_axes = "fp32", "torch", False, (0, 1, 2)
    info = ModelInfo(
        "brats", Path("."), "nnU-Net 3d_fullres", {2: "whole tumor", 1: "tumor core", 4: "enhancing"}, "MR"
    )

    def load(self, case, check):
        image = io.read_image(case.images[0])
        check(np.asarray(image[0]), image.meta["original_affine"])
        return {"image": image}

    def predict(self, data):
        labels = np.zeros(tuple(data["image"].shape[1:]), dtype=np.uint8)
        labels[:10], labels[10:20], labels[20:25] = 2, 1, 4
        return labels, None


def test_a_region_based_models_values_run_1_to_n_in_value_order(tmp_path):
    image = nifti(tmp_path / "mr.nii.gz", np.ones((30, 12, 10), dtype=np.float32), (1.0, 1.0, 1.0))
    warm = WarmModel("brats", {"fp32": RegionEngine()})
    assert warm.label_names == {"tumor core": 1, "whole tumor": 2, "enhancing": 3}
    result = warm.segment(image, Request(extension=".nrrd"))
    (tmp_path / "out.nrrd").write_bytes(result.payload)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nrrd"))).transpose(2, 1, 0)
    assert labels.shape == (30, 12, 10)
    assert (labels[:10] == 2).all() and (labels[10:20] == 1).all() and (labels[20:25] == 3).all()
    assert (labels[25:] == 0).all()
