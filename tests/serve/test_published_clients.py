"""The protocol the way the published clients call it, against a real uvicorn process.

Two clients exist outside this repository and are the compatibility promise (README, "Clients
that already speak it"):
- the task's test client posts `requests.post(url, data=json.dumps({"instances": [...]}))`: a
  string body, so requests sends **no Content-Type**; 44 instances a batch, each with an int
  `key`, `caption` and `b64`, each image once per caption;
- the finals harness posts one instance with `json=` (Content-Type application/json) and no `key`.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import httpx
import pytest
import requests

from findbox.images import encode_jpeg_b64
from tests.conftest import CAPTIONS, make_image

BATCH = 44  # the published test client's batch


def client_instances(count: int = BATCH, with_key: bool = True) -> list[dict]:
    """The test client's order: images in turn, each sent once per caption, keys 0..count-1."""
    images = [encode_jpeg_b64(make_image(seed)) for seed in range(count // 4 + 1)]
    instances = []
    for i in range(count):
        instance = {"caption": CAPTIONS[i % len(CAPTIONS)], "b64": images[i // 4]}
        instances.append({"key": i, **instance} if with_key else instance)
    return instances


def with_header(server, instances, path="/identify") -> httpx.Response:
    return httpx.post(server.url + path, json={"instances": instances}, timeout=120)


def assert_boxes(response, count: int) -> list[list[float]]:
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == count and all(len(box) == 4 for box in predictions)
    return predictions


def test_the_published_test_clients_request_is_answered_like_a_json_one(live_server):
    instances = client_instances()
    response = requests.post(live_server.url + "/identify", data=json.dumps({"instances": instances}), timeout=120)
    assert "Content-Type" not in response.request.headers  # what requests really sends for a string body
    assert assert_boxes(response, BATCH) == with_header(live_server, instances).json()["predictions"]


def test_a_raw_request_with_only_host_and_content_length(live_server):
    """http.client with no Content-Type, Accept or Accept-Encoding: only the Host HTTP/1.1 requires."""
    instances = client_instances(4)
    body = json.dumps({"instances": instances}).encode()
    url = urlsplit(live_server.url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
    try:
        connection.putrequest("POST", "/identify", skip_accept_encoding=True)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        payload = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200, payload
    assert payload["predictions"] == with_header(live_server, instances).json()["predictions"]


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8",
                                          "application/x-www-form-urlencoded",  # curl -d's default
                                          "application/json; charset=utf-8", "application/vnd.api+json"])
@pytest.mark.parametrize("path", ["/identify", "/v1/ground"])
def test_json_is_read_whatever_the_declared_type(live_server, content_type, path):
    instances = client_instances(4, with_key=False)
    r = httpx.post(live_server.url + path, content=json.dumps({"instances": instances}),
                   headers={"content-type": content_type}, timeout=120)
    assert r.status_code == 200, r.text
    expected = with_header(live_server, instances, path).json()
    if path == "/identify":
        assert r.json() == expected
    else:
        assert [g["box"] for g in r.json()["results"]] == [g["box"] for g in expected["results"]]


def test_the_finals_harness_single_instance_without_key(live_server):
    instance = client_instances(1, with_key=False)
    r = requests.post(live_server.url + "/identify", json={"instances": instance}, timeout=120)
    assert r.request.headers["Content-Type"] == "application/json"
    assert len(assert_boxes(r, 1)) == 1


def test_keys_present_or_absent_change_nothing_but_the_echo(live_server):
    keyed, bare = client_instances(8), client_instances(8, with_key=False)
    assert with_header(live_server, keyed).json() == with_header(live_server, bare).json()
    assert [g["key"] for g in with_header(live_server, keyed, "/v1/ground").json()["results"]] == list(range(8))
    assert [g["key"] for g in with_header(live_server, bare, "/v1/ground").json()["results"]] == [None] * 8
    # a string key, as some clients send, and an unknown extra field are taken as well
    extra = [{**inst, "key": f"k{i}", "note": "ignored"} for i, inst in enumerate(bare)]
    assert with_header(live_server, extra).json() == with_header(live_server, bare).json()


def test_the_same_image_repeated_gets_the_same_box_for_the_same_caption(live_server):
    image = encode_jpeg_b64(make_image(5))
    instances = [{"key": i, "caption": CAPTIONS[i % 2], "b64": image} for i in range(6)]
    boxes = assert_boxes(with_header(live_server, instances), 6)
    assert boxes[0] == boxes[2] == boxes[4] and boxes[1] == boxes[3] == boxes[5]
    # and each equals the box of that instance sent alone
    assert with_header(live_server, instances[:1]).json()["predictions"] == [boxes[0]]


def test_health_body_and_empty_instances_as_the_original_answered(live_server):
    r = requests.get(live_server.url + "/health", timeout=10)
    assert r.status_code == 200 and r.json() == {"message": "health ok"}
    assert r.headers["content-type"] == "application/json"
    # the original looped over instances: an empty list answered an empty list of predictions
    r = requests.post(live_server.url + "/identify", data=json.dumps({"instances": []}), timeout=30)
    assert r.status_code == 200 and r.json() == {"predictions": []}


def _not_json_bodies():
    form_fields = {"caption": "grey missile"}
    image = make_image(1).tobytes()[:2000]
    return [
        # a real multipart upload (curl -F file=@image.jpg)
        ("multipart upload", dict(files={"file": ("image.jpg", image, "image/jpeg")}, data=form_fields), 415),
        # a real form (curl -d caption=...)
        ("urlencoded form", dict(data=form_fields), 415),
        ("raw image bytes", dict(data=image, headers={"Content-Type": "image/jpeg"}), 415),
        ("octet-stream", dict(data=image, headers={"Content-Type": "application/octet-stream"}), 415),
        # no Content-Type and not JSON text
        ("binary without a header", dict(data=b"\xff\xd8\xff\xe0 not json"), 400),
        ("text without a header", dict(data=b"caption=grey missile"), 400),
    ]


@pytest.mark.parametrize("name, kwargs, status", _not_json_bodies(), ids=[b[0] for b in _not_json_bodies()])
@pytest.mark.parametrize("path", ["/identify", "/v1/ground"])
def test_a_body_that_is_not_json_says_what_to_send(live_server, name, kwargs, status, path):
    r = requests.post(live_server.url + path, timeout=30, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()
    assert error["field"] == "body" and error["index"] is None
    assert error["detail"].startswith("body: expected JSON")
    assert '{"instances": [{"caption"' in error["detail"] and "curl" in error["detail"]
    assert "dictionary" not in error["detail"]
    assert with_header(live_server, client_instances(1)).status_code == 200  # the process stays up


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_broken_json_without_a_json_header_is_named_as_broken_json(live_server, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    r = requests.post(live_server.url + "/identify", data=b'{"instances": [', headers=headers, timeout=30)
    assert r.status_code == 400 and r.json()["field"] == "body"
    assert r.json()["detail"].startswith("body: not valid JSON")


def test_openapi_still_documents_a_json_body(live_server):
    spec = httpx.get(live_server.url + "/openapi.json").json()
    for path in ("/identify", "/v1/ground"):
        operation = spec["paths"][path]["post"]
        assert list(operation["requestBody"]["content"]) == ["application/json"]
        assert "415" in operation["responses"]


def test_the_demo_bundle_answers_the_test_client_as_it_answers_a_json_client():
    """Done-when of the published-client issue, in small: on the demo bundle the test client's style
    gets 200 and one box per instance, the same boxes (so the same accuracy) as `json=` sends.
    benchmarks/published_client.py runs the same over 100 fresh scenes."""
    import base64

    from findbox.eval.metric import iou_ltwh, is_hit
    from findbox.synth import SynthConfig, generate_scene_jpeg
    from tests.conftest import ServerProcess

    instances, truths = [], []
    for index in range(12):
        data, objects = generate_scene_jpeg(SynthConfig(noise="low"), index, 777_003)
        b64 = base64.b64encode(data).decode("ascii")
        instances += [{"key": len(instances) + i, "caption": o.caption, "b64": b64} for i, o in enumerate(objects)]
        truths += [o.bbox_ltwh for o in objects]
    instances, truths = instances[:BATCH], truths[:BATCH]
    assert len(instances) == BATCH
    server = ServerProcess(["--device", "cpu"])
    try:
        test_client = requests.post(server.url + "/identify", data=json.dumps({"instances": instances}), timeout=300)
        boxes = assert_boxes(test_client, BATCH)
        assert boxes == with_header(server, instances).json()["predictions"]
    finally:
        server.stop()
    hits = [is_hit(iou_ltwh(box, truth)) for box, truth in zip(boxes, truths)]
    assert sum(hits) / len(hits) > 0.8  # the bundle answers, not only parses (0.95 measured on fresh seeds)
