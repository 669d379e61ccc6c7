"""The review server against a real HTTP client: the token, the allow-lists, stale saves, where
it writes, and the labels it saves (one in-process server on a tiny synthetic run).

Requests go through ``http.client`` with the path exactly as written here: a higher-level
client would normalise ``../`` away before the server ever saw it.
"""

import hashlib
import http.client
import json
import os

import numpy as np
import pytest

from mouse_pipeline.annotations import read_labels
from mouse_pipeline.config import Config
from mouse_pipeline.dataset import VideoFile, label_file
from mouse_pipeline.review.server import ReviewServer, open_session
from tests.integration.review_run import BEHAVIORS, FRAMES, UNANNOTATED, ReviewRun, review_process
from tests.integration.runs import cli, error_line

pytest.importorskip("starlette")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("review")
    data = ReviewRun(root)
    outside = root / "outside.txt"
    outside.write_text("secret outside the allowed folders\n")
    out = root / "reviewed"
    out.mkdir()
    for folder in (out, data.data / "videos"):  # planted before the server starts
        os.symlink(outside, folder / "planted.mp4")
    os.symlink(outside, out / "planted")
    session = open_session(data.run, [data.data / "videos" / f"{v}.mp4" for v in data.ids]
                           + [data.extra / "videos"], out=out, user="tester")
    server = ReviewServer(session).start()
    yield data, server, out, outside
    server.stop()


def request(server, path, method="GET", token=None, cookie=None, header=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    headers = {}
    if cookie:
        headers["Cookie"] = f"mp_review={cookie}"
    if header:
        headers["X-Review-Token"] = header
    if token:
        path += ("&" if "?" in path else "?") + f"token={token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp, data


def get(server, path):
    return request(server, path, cookie=server.session.token)


def save(server, vid, version, edits):
    t = server.session.token
    return request(server, f"/api/videos/{vid}/labels", "POST", cookie=t, header=t,
                   body={"version": version, "edits": edits})


def snapshot(folder, skip):
    """Every file below ``folder`` (but ``skip``) with its content hash."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file() and not p.is_symlink() and skip not in p.parents}


# -- the token -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/", "/api/session", "/static/app.js", "/api/videos/mouse_000",
                                  "/api/videos/mouse_000/frames/0"])
def test_without_the_token_or_with_a_wrong_one_every_request_is_403(served, path):
    _, server, _, _ = served
    t = server.session.token
    wrong = ("y" if t[0] == "x" else "x") + t[1:]  # never the token itself (1 in 64 starts with x)
    for kwargs in ({}, {"token": wrong}, {"cookie": wrong}, {"header": wrong}, {"token": ""}):
        resp, body = request(server, path, **kwargs)
        assert resp.status == 403, (path, kwargs)
        assert b"mouse-pipeline" not in body and b"\xff\xd8" not in body[:2]
    assert get(server, path)[0].status == 200


def test_the_url_token_becomes_a_strict_cookie_and_leaves_the_address_bar(served):
    _, server, _, _ = served
    resp, _ = request(server, "/", token=server.session.token)
    assert resp.status == 303 and resp.getheader("Location") == "/"
    cookie = resp.getheader("Set-Cookie")
    assert f"mp_review={server.session.token}" in cookie
    assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower()
    assert len(server.session.token) >= 32


def test_a_write_needs_the_token_header_not_only_the_cookie(served):
    data, server, out, _ = served
    t = server.session.token
    edit = {"version": "original", "edits": [{"op": "reviewed", "start": 0, "end": 1}]}
    resp, _ = request(server, f"/api/videos/{data.ids[2]}/labels", "POST", cookie=t, body=edit)
    assert resp.status == 403
    assert not (out / f"{data.ids[2]}.csv").exists()


# -- the allow-lists ---------------------------------------------------------------------

TRAVERSALS = [
    "/static/../setup.cfg", "/static/..%2fsetup.cfg", "/static/%2e%2e%2fsetup.cfg", "/static/%2E%2E%2Fsetup.cfg",
    "/static/%252e%252e%252fsetup.cfg", "/static/..%252fsetup.cfg", "/static/%2fetc%2fpasswd",
    "/static//etc/passwd", "/static/index.html", "/static/app.js/../../etc/passwd", "/etc/passwd", "//etc/passwd",
    "/static/planted", "/planted", "/api/videos/planted/frames/0", "/api/videos/planted.mp4/frames/0",
    "/api/videos/..%2f..%2fetc%2fpasswd/frames/0", "/api/videos/%2e%2e/frames/0",
    "/api/videos/%252e%252e%252fetc/frames/0", "/api/videos/%2fetc%2fpasswd", "/api/videos//etc/passwd",
    "/api/videos/mouse_000/frames/-1", f"/api/videos/mouse_000/frames/{FRAMES}", "/api/videos/mouse_000/frames/1e1",
    "/api/videos/mouse_000/frames/%2e%2e%2f0", "/api/videos/mouse_000/frames/0x1", "/api/videos/mouse_000/frames/+1",
    "/api/videos/mouse_000/frames/%C2%B9",  # a superscript one: a digit to str.isdigit, not to the route
    "/api/videos/mouse_000/../../../etc/passwd", "/reviewed/planted", "/api/videos/mouse_000/labels/../../x",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_no_path_from_a_request_reaches_the_file_system(served, path):
    _, server, _, _ = served
    resp, body = get(server, path)
    assert resp.status == 404, path
    assert b"secret" not in body and b"root:" not in body and b"[metadata]" not in body


def test_a_symlinked_video_planted_in_the_videos_folder_is_not_served(served):
    _, server, _, _ = served
    ids = [v["id"] for v in json.loads(get(server, "/api/session")[1])["videos"]]
    assert "planted" not in ids and len(ids) == 4  # the session's videos were named, not scanned


def test_frames_are_the_decoded_video_frames_and_differ(served):
    data, server, _, _ = served
    first, second = (get(server, f"/api/videos/{data.ids[0]}/frames/{i}")[1] for i in (0, 1))
    assert first[:2] == b"\xff\xd8" and first != second
    reader = server.session.frames.reader(data.ids[0])
    seeks = reader.seeks
    for i in range(2, 12):  # playback reads on, it never seeks
        assert get(server, f"/api/videos/{data.ids[0]}/frames/{i}")[0].status == 200
    assert reader.seeks == seeks


# -- saving ------------------------------------------------------------------------------

def test_a_stale_save_is_refused_with_409_and_writes_nothing(served):
    data, server, out, _ = served
    vid = data.ids[0]
    state = json.loads(get(server, f"/api/videos/{vid}")[1])["current"]
    first = [{"op": "set", "behavior": "grooming", "start": 3, "end": 5, "value": 1}]
    resp, body = save(server, vid, state["version"], first)  # the first tab saves
    assert resp.status == 200
    after_first = (out / f"{vid}.csv").read_bytes()
    second = [{"op": "set", "behavior": "grooming", "start": 3, "end": 5, "value": 0}]
    resp, body = save(server, vid, state["version"], second)  # the second tab, loaded before
    assert resp.status == 409 and b"reload" in body
    assert (out / f"{vid}.csv").read_bytes() == after_first
    resp, body = save(server, vid, json.loads(get(server, f"/api/videos/{vid}")[1])["current"]["version"], second)
    assert resp.status == 200  # after reloading it saves
    assert (read_labels(out / f"{vid}.csv", "thesis", BEHAVIORS).matrix == data.truth[vid]).all()


def test_a_file_changed_on_disk_by_another_server_makes_the_save_stale(served):
    data, server, out, _ = served
    vid = data.ids[0]
    version = json.loads(get(server, f"/api/videos/{vid}")[1])["current"]["version"]
    path = out / f"{vid}.csv"
    path.write_text(path.read_text().replace("\n0,", "\n1,", 1))
    edits = [{"op": "reviewed", "start": 0, "end": 0}]
    assert save(server, vid, version, edits)[0].status == 409


def test_a_save_while_another_server_saves_the_same_video_is_409(served, monkeypatch):
    from mouse_pipeline.locks import acquire_lock
    from mouse_pipeline.review import store

    data, server, out, _ = served
    vid = data.ids[2]
    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.2)
    with acquire_lock(out, name=f".{vid}.review.lock"):  # as another server's save holds it
        resp, body = save(server, vid, "original", [{"op": "reviewed", "start": 0, "end": 1}])
    assert resp.status == 409 and not (out / f"{vid}.csv").exists()


@pytest.mark.parametrize("edits", [
    [], "x", [{"op": "set", "behavior": "flying", "start": 0, "end": 1, "value": 1}],
    [{"op": "set", "behavior": "grooming", "start": 0, "end": FRAMES, "value": 1}],
    [{"op": "set", "behavior": "grooming", "start": 4, "end": 2, "value": 1}],
    [{"op": "set", "behavior": "grooming", "start": 0, "end": 1, "value": 2}],
    [{"op": "set", "behavior": "grooming", "start": 0, "end": 1, "value": True}],
    [{"op": "set", "behavior": "grooming", "start": "0", "end": 1, "value": 1}],
    [{"op": "rm", "start": 0, "end": 1}],
])
def test_a_malformed_edit_is_400_and_writes_nothing(served, edits):
    data, server, out, _ = served
    vid = data.ids[2]
    resp, _ = save(server, vid, "original", edits)
    assert resp.status == 400
    assert not (out / f"{vid}.csv").exists()


def test_writes_go_only_into_the_labels_folder(served):
    data, server, out, outside = served
    before = snapshot(data.root, out)
    vid = data.ids[1]
    version = json.loads(get(server, f"/api/videos/{vid}")[1])["current"]["version"]
    resp, _ = save(server, vid, version, [{"op": "set", "behavior": "mid_rearing", "start": 20, "end": 30, "value": 1}])
    assert resp.status == 200
    t = server.session.token
    resp, body = request(server, f"/api/videos/{vid}/export/boris", "POST", cookie=t, header=t, body={})
    assert resp.status == 200 and json.loads(body)["path"] == str(out.resolve() / "boris" / f"{vid}.tsv")
    assert snapshot(data.root, out) == before  # nothing outside the labels folder changed
    assert outside.read_text() == "secret outside the allowed folders\n"
    written = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.is_symlink()}
    assert {f"{vid}.csv", f"{vid}.review.json", f"boris/{vid}.tsv"} <= written
    assert all(name.split("/")[-1].split(".")[0] in data.ids for name in written)


def test_a_symlink_where_a_label_file_goes_is_refused_not_followed(served):
    data, server, out, outside = served
    vid = "fresh_000"
    os.symlink(outside, out / f"{vid}.csv")
    try:
        resp, _ = save(server, vid, "original", [{"op": "reviewed", "start": 0, "end": 3}])
        assert resp.status == 403
        assert outside.read_text() == "secret outside the allowed folders\n"
    finally:
        (out / f"{vid}.csv").unlink()


def test_saved_labels_are_a_label_file_that_trains_reviewed_stretches_only(served):
    """Unannotated video: frames nobody reviewed stay -1; a bout is 1; reviewed frames 0."""
    data, server, out, _ = served
    vid = "fresh_000"
    edits = [{"op": "set", "behavior": "grooming", "start": 10, "end": 14, "value": 1},
             {"op": "reviewed", "start": 5, "end": 20}]
    resp, body = save(server, vid, "original", edits)
    assert resp.status == 200
    cfg = Config().replace(**{"data.labels": str(out), "data.behaviors": list(BEHAVIORS)})
    path = label_file(cfg, VideoFile(data.extra / "videos" / f"{vid}.mp4", vid))
    y = read_labels(path, cfg.data.label_format, cfg.data.behaviors).matrix
    expected = np.full((40, 3), -1, np.int8)
    expected[5:21] = 0
    expected[10:15, 0] = 1
    assert (y == expected).all()
    record = json.loads((out / f"{vid}.review.json").read_text())
    assert record["reviewed"] == [[5, 20]] and record["labels_sha256"] == json.loads(body)["version"]
    entry = record["history"][-1]
    assert entry["user"] == "tester" and entry["time"].endswith("+00:00") and entry["edits"] == edits
    assert entry["frames_changed"] == {"grooming": 16, "mid_rearing": 16, "wall_rearing": 16}


def test_a_partly_annotated_video_keeps_its_unannotated_frames(served):
    data, server, out, _ = served
    vid = data.ids[1]
    state = json.loads(get(server, f"/api/videos/{vid}")[1])
    assert state["original"]["grooming"][0] == [0, UNANNOTATED - 1, -1]


# -- the command ---------------------------------------------------------------------------

@pytest.mark.parametrize("inside", ["", "sub"])
def test_out_equal_to_or_inside_the_annotations_is_refused(served, inside):
    data, _, _, _ = served
    line = error_line(cli("review", "--run", data.run, "--out", data.labels / inside, "--no-browser", "--quiet"))
    assert "annotations folder" in line and str(data.labels) in line
    assert not (data.labels / "sub").exists()


def test_without_the_review_extra_review_exits_2_saying_how_to_install(served, monkeypatch):
    data, _, _, _ = served
    monkeypatch.setitem(__import__("sys").modules, "uvicorn", None)
    result = cli("review", "--run", data.run, "--no-browser")
    assert result.exit_code == 2 and "pip install 'mouse-pipeline[review]'" in result.stderr


def test_the_command_listens_on_localhost_on_a_free_port_and_warns_for_another_host(served):
    data, _, _, _ = served
    with review_process("--run", str(data.run), "--host", "127.0.0.2") as (proc, url):
        assert url.startswith("http://127.0.0.2:") and "token=" in url
        conn = http.client.HTTPConnection("127.0.0.2", int(url.split(":")[2].split("/")[0]), timeout=10)
        conn.request("GET", "/api/session")
        assert conn.getresponse().status == 403
        proc.terminate()
        proc.wait(timeout=10)
        assert "warning: listening on 127.0.0.2" in proc.stderr.read()


@pytest.mark.parametrize("text, says", [
    ("video,start,end,score\nmouse_000,1,2,0.5\n", "no column(s) why;"),
    ("video,start_frame,score,why\nmouse_000,1,0.5,x\n", "no column(s) start_frame, end_frame (or start, end)"),
    ("video,start,end,score,why\nmouse_999,1,2,0.5,x\n", "line 2: video 'mouse_999' is not among"),
    (f"video,start,end,score,why\nmouse_000,1,{FRAMES},0.5,x\n", "outside video 'mouse_000'"),
    ("video,start,end,score,why\nmouse_000,1.5,4,0.5,x\n", "frame numbers"),
])
def test_a_bad_queue_file_exits_2_naming_the_line(served, tmp_path, text, says):
    data, _, _, _ = served
    queue = tmp_path / "suggestions.csv"
    queue.write_text(text)
    line = error_line(cli("review", "--run", data.run, "--queue", queue, "--no-browser", "--quiet"))
    assert says in line and str(queue) in line


def test_a_moved_video_exits_2_saying_to_pass_videos(served, tmp_path):
    import shutil

    data, _, _, _ = served
    run = shutil.copytree(data.run, tmp_path / "run")
    info = json.loads((run / "run.json").read_text())
    info["videos"][data.ids[0]]["video"] = str(tmp_path / "moved" / f"{data.ids[0]}.mp4")
    (run / "run.json").write_text(json.dumps(info))
    line = error_line(cli("review", "--run", run, "--no-browser", "--quiet"))
    assert f"video '{data.ids[0]}'" in line and "--videos" in line
    # (the videos folder holds the planted symlink, which is not a video: name the file)
    with review_process("--run", str(run), "--videos", str(data.data / "videos" / f"{data.ids[0]}.mp4")) as (_, url):
        assert url.startswith("http://127.0.0.1:")  # found where --videos says
