"""daah_tf.serve: the HTTP API over one smoke-trained run (a copy of the session's).

Hits are checked against the SavedModel and a brute-force Hamming ranking made here; every
hostile request gets a 4xx JSON error naming the problem, and the service answers a normal
query afterwards. One test runs the real command (uvicorn on a free loopback port).
"""

import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn) is not installed")
pytest.importorskip("prometheus_client", reason="the serve extra is not installed")

import warnings  # noqa: E402

with warnings.catch_warnings():  # starlette's TestClient warns that httpx will become httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from daah_tf.metrics import hamming_distance  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def run_module(module, *args, timeout=600):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def model_dir(smoke_run, tmp_path_factory):
    """A copy of the session's smoke-trained run (tests/conftest.py): the service builds its
    index inside the run directory."""
    directory = str(tmp_path_factory.mktemp("serve") / "run")
    shutil.copytree(smoke_run[0], directory)
    return directory


@pytest.fixture(scope="module")
def state(model_dir):
    from daah_tf.serve.state import ServeSettings, ServiceState

    return ServiceState(ServeSettings(model_dir=model_dir))  # builds DIR/index (missing)


def make_client(state, **settings):
    from daah_tf.serve.app import create_app
    from daah_tf.serve.state import ServeSettings

    return TestClient(create_app(ServeSettings(model_dir=state.settings.model_dir, **settings),
                                 state))


@pytest.fixture(scope="module")
def client(state):
    with make_client(state) as test_client:
        yield test_client


def png_bytes(pixels):
    stream = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(stream, "PNG")
    return stream.getvalue()


def brute_hits(state, code, target, k):
    """[(id, distance)] sorted by (distance, index position), from the index's own codes."""
    index = state.indexes[target]
    dist = hamming_distance(np.asarray(code, np.uint8)[None], index._all_codes())[0]
    order = sorted(range(len(dist)), key=lambda j: (dist[j], j))[:k]
    return [(int(index._all_ids()[j]), int(dist[j])) for j in order]


def assert_alive(client):
    response = client.post("/v1/search/text", json={"text": "w1x0 w1x2", "k": 3})
    assert response.status_code == 200 and len(response.json()["hits"]) == 3


def test_text_search_returns_the_exact_ranking(client, state):
    text = "w1x0 w1x2 noise3"
    response = client.post("/v1/search/text", json={"text": text, "k": 7})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["query_modality"] == "text" and body["target"] == "image"
    assert body["bits"] == 16 and body["index_items"] == len(state.indexes["image"])
    code = state.encoder.encode_texts([text])[0]
    got = [(hit["id"], hit["distance"]) for hit in body["hits"]]
    assert got == brute_hits(state, code, "image", 7)
    assert [hit["rank"] for hit in body["hits"]] == list(range(1, 8))
    first = body["hits"][0]
    item = state.items[first["id"]]
    assert first["text"] == item["text"] and first["labels"] == item["labels"]
    assert first["thumbnail"] == f"/v1/thumbnails/{first['id']}"
    same = client.post("/v1/search/text", json={"text": text, "k": 4, "target": "text"}).json()
    assert [(h["id"], h["distance"]) for h in same["hits"]] == brute_hits(state, code, "text", 4)


def test_image_search_by_upload_and_by_raw_body(client, state):
    picture = png_bytes(state.thumbnails.pixels[int(state.indexes["image"]._all_ids()[3])])
    code = state.encoder.encode_image_files([picture])[0]
    want = brute_hits(state, code, "text", 5)
    upload = client.post("/v1/search/image?k=5", files={"file": ("q.png", picture, "image/png")})
    raw = client.post("/v1/search/image?k=5", content=picture,
                      headers={"content-type": "image/png"})
    for response in (upload, raw):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["query_modality"] == "image" and body["target"] == "text"
        assert [(hit["id"], hit["distance"]) for hit in body["hits"]] == want
    to_images = client.post("/v1/search/image?k=2&target=image", content=picture).json()
    assert [(h["id"], h["distance"]) for h in to_images["hits"]] == brute_hits(
        state, code, "image", 2)


def test_vector_search_and_predict_match_the_savedmodel(client, state):
    bow = np.zeros(state.encoder.vector_dims()["text"], np.float32)
    bow[[1, 4]] = 1.0
    response = client.post("/v1/search/vector", json={"vector": bow.tolist(), "k": 3})
    code = state.encoder.encode_text_vectors(bow[None])[0]
    assert [(h["id"], h["distance"]) for h in response.json()["hits"]] == brute_hits(
        state, code, "image", 3)
    predicted = client.post("/v1/models/daah:predict", json={
        "signature_name": "encode_text", "instances": ["w1x0 w1x2", "w0x3"]})
    assert predicted.status_code == 200, predicted.text
    packed = [row["packed_codes"] for row in predicted.json()["predictions"]]
    assert packed == state.encoder.encode_texts(["w1x0 w1x2", "w0x3"]).tolist()
    picture = png_bytes(np.full((16, 16, 3), 90))
    as_b64 = client.post("/v1/models/daah:predict", json={
        "signature_name": "encode_image_bytes",
        "instances": [{"b64": base64.b64encode(picture).decode()}]})
    assert as_b64.json()["predictions"][0]["packed_codes"] == (
        state.encoder.encode_image_files([picture])[0].tolist())
    status = client.get("/v1/models/daah").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"


@pytest.mark.parametrize("body, field", [
    ({"text": "", "k": 3}, "body.text"),
    ({"text": "   ", "k": 3}, "blank"),
    ({"text": "x" * 2001}, "at most 2000"),
    ({"text": "w1x0", "txt": "typo"}, "body.txt: Extra inputs are not permitted"),
    ({"text": "w1x0", "k": 0}, "body.k"),
    ({"text": "w1x0", "k": 101}, "less than or equal to 100"),
    ({"text": "w1x0", "k": "5"}, "body.k"),
    ({"text": "w1x0", "k": True}, "body.k"),
    ({"text": "w1x0", "target": "audio"}, "body.target"),
    ({"k": 3}, "body.text: Field required"),
])
def test_bad_text_queries_get_422_naming_the_field(client, body, field):
    response = client.post("/v1/search/text", json=body)
    assert response.status_code == 422
    assert field in response.json()["error"]
    assert_alive(client)


def test_bad_json_and_bad_uploads_get_4xx(client):
    broken = client.post("/v1/search/text", content=b"{not json",
                         headers={"content-type": "application/json"})
    assert broken.status_code == 422 and "JSON" in broken.json()["error"]
    text_file = client.post("/v1/search/image", files={"file": ("a.txt", b"hello", "text/plain")})
    assert text_file.status_code == 415 and "not a JPEG, PNG, GIF or BMP" in text_file.json()[
        "error"]
    truncated = png_bytes(np.zeros((16, 16, 3)))[:40]
    cut = client.post("/v1/search/image", content=truncated, headers={"content-type": "image/png"})
    assert cut.status_code == 415 and "truncated or corrupt" in cut.json()["error"]
    empty = client.post("/v1/search/image", content=b"", headers={"content-type": "image/png"})
    assert empty.status_code == 415 and "empty" in empty.json()["error"]
    no_field = client.post("/v1/search/image", files={"other": ("a.png", b"x", "image/png")})
    assert no_field.status_code == 422 and '"file"' in no_field.json()["error"]
    bad_k = client.post("/v1/search/image?k=1000", content=b"x")
    assert bad_k.status_code == 422 and "query.k" in bad_k.json()["error"]
    bad_b64 = client.post("/v1/models/daah:predict", json={
        "signature_name": "encode_image_bytes", "instances": [{"b64": "!!"}]})
    assert bad_b64.status_code == 400 and "base64" in bad_b64.json()["error"]
    wrong_signature = client.post("/v1/models/daah:predict", json={
        "signature_name": "nope", "instances": ["x"]})
    assert wrong_signature.status_code == 400 and "encode_text" in wrong_signature.json()["error"]
    wrong_model = client.post("/v1/models/other:predict", json={"instances": ["x"]})
    assert wrong_model.status_code == 404 and "'daah'" in wrong_model.json()["error"]
    assert_alive(client)


def test_oversized_body_gets_413(state):
    with make_client(state, max_body_bytes=1000) as small:
        response = small.post("/v1/search/image", content=b"\x89PNG\r\n\x1a\n" + b"0" * 5000,
                              headers={"content-type": "image/png"})
        assert response.status_code == 413 and "over 1000 bytes" in response.json()["error"]

        def chunks():  # no Content-Length: the limit applies while the body streams in
            for _ in range(10):
                yield b"0" * 500

        streamed = small.post("/v1/search/image", content=chunks(),
                              headers={"content-type": "image/png"})
        assert streamed.status_code == 413
        assert_alive(small)


@pytest.mark.parametrize("path, status", [
    ("/v1/thumbnails/..%2F..%2F..%2Fetc%2Fpasswd", 404),
    ("/v1/thumbnails/../../etc/passwd", 404),
    ("/v1/thumbnails/%2Fetc%2Fpasswd", 404),
    ("/v1/thumbnails/..", 404),  # the client resolves ".." before sending
    ("/v1/thumbnails/-1", 422),
    ("/v1/thumbnails/99999999", 404),
    ("/v1/thumbnails/1?size=100000", 422),
])
def test_thumbnail_route_takes_ids_not_paths(client, path, status):
    response = client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json" and response.json()["error"]
    assert_alive(client)


def test_thumbnails_of_synthetic_items_are_their_pictures(client, state):
    item_id = int(state.indexes["image"]._all_ids()[0])
    response = client.get(f"/v1/thumbnails/{item_id}?size=32")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    picture = np.asarray(Image.open(io.BytesIO(response.content)))
    assert picture.shape == (32, 32, 3)  # 16x16 doubled by nearest neighbour
    np.testing.assert_array_equal(picture[::2, ::2], state.thumbnails.pixels[item_id])


def test_folder_thumbnails_stay_inside_the_data_folder(tmp_path):
    from daah_tf.serve.thumbnails import ThumbnailError, Thumbnails

    root = tmp_path / "data"
    (root / "photos").mkdir(parents=True)
    Image.new("RGB", (40, 20), (200, 10, 10)).save(root / "photos" / "a.jpg")
    secret = tmp_path / "secret.png"
    Image.new("RGB", (8, 8)).save(secret)
    (root / "photos" / "link.png").symlink_to(secret)
    (root / "photos" / "notes.jpg").write_bytes(b"not an image")
    items = {0: {"image": str(root / "photos" / "a.jpg")},
             1: {"image": str(root / "photos" / ".." / ".." / "secret.png")},
             2: {"image": str(root / "photos" / "link.png")},
             3: {"image": str(root / "photos" / "missing.jpg")},
             4: {"image": str(root / "photos" / "notes.jpg")}}
    thumbnails = Thumbnails(items, "paths", data_root=str(root))
    data, media_type = thumbnails.get(0, 64)
    assert media_type == "image/jpeg" and Image.open(io.BytesIO(data)).size == (64, 32)
    for item_id, status in ((1, 403), (2, 403), (3, 404), (4, 415), (9, 404)):
        with pytest.raises(ThumbnailError) as caught:
            thumbnails.get(item_id, 64)
        assert caught.value.status == status
    with pytest.raises(ThumbnailError, match="feature vectors") as caught:
        Thumbnails(items, "features").get(0, 64)
    assert caught.value.status == 404


def test_healthz_metrics_and_page(client, state):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["bits"] == 16
    assert health["index_items"] == {"image": len(state.indexes["image"]),
                                     "text": len(state.indexes["text"])}
    assert "/tmp" not in json.dumps(health)  # no server paths
    client.post("/v1/search/text", json={"text": "w0x1", "k": 2})
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    assert 'daah_requests_total{method="POST",route="/v1/search/text",status="200"}' in text
    assert 'daah_request_latency_seconds_bucket{le="0.05",route="/v1/search/text"}' in text
    assert f'daah_index_items{{modality="image"}} {float(len(state.indexes["image"]))}' in text
    assert "daah_encode_batch_size_count" in text
    page = client.get("/")
    assert page.status_code == 200 and '<input id="query"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert "/v1/search/text" in client.get("/openapi.json").json()["paths"]
    unknown = client.get("/nope")
    assert unknown.status_code == 404 and unknown.json()["error"] == "no route GET /nope"


def test_api_key_is_enforced(state, tmp_path):
    with make_client(state, api_key="k" * 20) as keyed:
        assert keyed.post("/v1/search/text", json={"text": "w1x0"}).status_code == 401
        wrong = keyed.post("/v1/search/text", json={"text": "w1x0"}, headers={"X-API-Key": "x"})
        assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
        for headers in ({"X-API-Key": "k" * 20}, {"Authorization": "Bearer " + "k" * 20}):
            assert keyed.post("/v1/search/text", json={"text": "w1x0"},
                              headers=headers).status_code == 200
        assert keyed.get("/metrics").status_code == 401
        assert keyed.get(f"/v1/thumbnails/{next(iter(state.items))}?api_key={'k' * 20}"
                         ).status_code == 200
        assert keyed.get("/healthz").status_code == 200


def test_bind_rules():
    from daah_tf.serve.security import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
    assert check_bind("127.0.0.1", None) is None
    with pytest.raises(ValueError, match="--api_key_file"):
        check_bind("0.0.0.0", None)


def test_non_local_bind_without_key_refuses_to_start(model_dir, tmp_path):
    result = run_module("daah_tf.serve", f"--model_dir={model_dir}", "--host=0.0.0.0",
                        timeout=120)
    assert result.returncode != 0 and "--api_key_file" in result.stderr
    short = tmp_path / "key"
    short.write_text("short\n")
    result = run_module("daah_tf.serve", f"--model_dir={model_dir}", "--host=0.0.0.0",
                        f"--api_key_file={short}", timeout=120)
    assert result.returncode != 0 and "at least 16 characters" in result.stderr


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_ready(url, process, deadline_s=300):
    """Polls /healthz until it answers 200 (the process loads TensorFlow first)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)  # polling interval, not synchronisation: the answer decides
    raise AssertionError("server did not become ready")


@pytest.fixture(scope="module")
def server(model_dir):
    """The real command on a free loopback port: yields its base URL."""
    port = free_port()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "daah_tf.serve", f"--model_dir={model_dir}",
                                f"--port={port}"], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def post_json(url, body):
    request = urllib.request.Request(url, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_real_server_answers_and_survives_bad_input(server, state):
    status, body = post_json(server + "/v1/search/text", {"text": "w1x0 w1x2", "k": 5})
    assert status == 200
    code = state.encoder.encode_texts(["w1x0 w1x2"])[0]
    assert [(h["id"], h["distance"]) for h in body["hits"]] == brute_hits(state, code, "image", 5)
    status, body = post_json(server + "/v1/search/text", {"text": "w1x0", "k": -1})
    assert status == 422 and "body.k" in body["error"]
    assert post_json(server + "/v1/search/text", {"text": "w1x0"})[0] == 200


# ----------------------------------------------------------------------------------------------
# The page in a real headless Chromium (Debian's chromium + chromium-driver, selenium)

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1200,900")


def chromium_driver(profile_dir):
    """A headless Chromium under selenium; pytest.skip with the reason where none can start."""
    webdriver = pytest.importorskip("selenium.webdriver",
                                    reason="selenium is not installed (the browser extra)")
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        pytest.skip("no chromium / chromedriver on PATH (apt-get install chromium "
                    "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile_dir}"):
        options.add_argument(flag)
    service = webdriver.ChromeService(executable_path=driver_path)
    return webdriver.Chrome(options=options, service=service)


def search_in_page(driver, url, text, timeout=60):
    """Types `text` into the page's box, submits, and waits (explicitly) for the grid's images
    to load. Returns the grid's hit cards."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, timeout)
    wait.until(ec.text_to_be_present_in_element((By.ID, "info"), "bit codes"))
    box = driver.find_element(By.ID, "query")
    box.clear()
    box.send_keys(text)
    driver.find_element(By.CSS_SELECTOR, "#text-form button").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#grid .hit")))
    wait.until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('#grid img')].every(i => i.complete && "
        "i.naturalWidth > 0)"))
    return driver.find_elements(By.CSS_SELECTOR, "#grid .hit")


def test_page_in_headless_chromium(server, state, tmp_path):
    driver = chromium_driver(tmp_path / "profile")
    try:
        cards = search_in_page(driver, server, "w1x0 w1x2")
        k = 12  # the page's default
        code = state.encoder.encode_texts(["w1x0 w1x2"])[0]
        want = brute_hits(state, code, "image", k)
        assert [int(card.get_attribute("data-id")) for card in cards] == [i for i, _ in want]
        first = cards[0].text
        assert f"distance {want[0][1]}" in first and state.items[want[0][0]]["text"] in first
        status = driver.find_element("id", "status").text
        assert f"{k} hits" in status
        driver.save_screenshot(str(tmp_path / "serve.png"))
        assert (tmp_path / "serve.png").stat().st_size > 1000
    finally:
        driver.quit()


def test_resolve_saved_model_serves_the_newest_version(tmp_path):
    from daah_tf.serve.model_path import resolve_saved_model

    base = tmp_path / "saved_model"
    with pytest.raises(FileNotFoundError):
        resolve_saved_model(str(tmp_path))
    base.mkdir()
    (base / "saved_model.pb").write_bytes(b"")
    assert resolve_saved_model(str(tmp_path)) == str(base)  # plain export
    for version in ("1", "2", "10"):
        (base / version).mkdir()
        (base / version / "saved_model.pb").write_bytes(b"")
    (base / "11").mkdir()  # incomplete: no saved_model.pb
    assert resolve_saved_model(str(tmp_path)) == str(base / "10")  # numeric, not text, order
