"""Starting a review session: the videos read, the socket bound, uvicorn serving, the URL.

:func:`open_session` reads the run (:mod:`.sources`), checks the labels folder and the
queue, and builds the :class:`~.app.Session`; :class:`ReviewServer` binds a socket
(``127.0.0.1`` and a port the system chooses, by default) and serves the app with uvicorn,
in this thread (:meth:`ReviewServer.run`, the command) or in a background thread
(:meth:`ReviewServer.start`, tests).
"""

from __future__ import annotations

import csv
import getpass
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..runs import RunFolder
from .app import Session, create_app
from .frames import FramePool
from .sources import load_videos
from .store import LabelStore, check_out_folder

log = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
QUEUE_COLUMNS = ("video", "score", "why")
#: The frame columns of a queue: suggest's ``start_frame, end_frame``, or ``start, end``.
FRAME_COLUMNS = (("start_frame", "end_frame"), ("start", "end"))


def read_queue(path: Path, videos: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of a review queue CSV, in file order.

    Columns ``video, score, why`` and the stretch in frames (end inclusive):
    ``start_frame, end_frame`` (``suggestions.csv`` of ``suggest``) or ``start, end``.
    Other columns are ignored.

    Raises
    ------
    InputError
        Missing columns, a row naming a video not in the session, or frames that are not
        whole numbers inside the video.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            names = reader.fieldnames or []
            rows = list(reader)
    except OSError as err:
        raise InputError(f"--queue {path}: cannot read it ({err.strerror or err})") from None
    frames = next((pair for pair in FRAME_COLUMNS if set(pair) <= set(names)), None)
    missing = [c for c in QUEUE_COLUMNS if c not in names]
    if missing or frames is None:
        need = missing + ([] if frames else ["start_frame, end_frame (or start, end)"])
        raise InputError(f"--queue {path}: no column(s) {', '.join(need)}; expected video, start_frame, "
                         "end_frame, score, why (suggest's suggestions.csv)")
    out = []
    for line, row in enumerate(rows, start=2):
        vid = row["video"]
        if vid not in videos:
            raise InputError(f"--queue {path}, line {line}: video {vid!r} is not among the videos reviewed "
                             f"({', '.join(videos)}); pass it with --videos")
        try:
            start, end = int(row[frames[0]]), int(row[frames[1]])
            score = float(row["score"]) if row["score"] else None
        except (TypeError, ValueError):
            raise InputError(f"--queue {path}, line {line}: {frames[0]} and {frames[1]} must be frame numbers "
                             "and score a number") from None
        if not 0 <= start <= end < videos[vid].n_frames:
            raise InputError(f"--queue {path}, line {line}: frames {start}..{end} are outside video {vid!r} "
                             f"(0..{videos[vid].n_frames - 1})")
        out.append({"video": vid, "start": start, "end": end, "score": score, "why": row["why"]})
    return out


def open_session(run: Path, videos: list[Path] | None = None, labels: Path | None = None,
                 out: Path | None = None, predictions: Path | None = None, queue: Path | None = None,
                 model: str | None = None, user: str | None = None) -> Session:
    """Everything a review server serves (see :func:`.sources.load_videos` for the options).

    Raises
    ------
    InputError
        ``out`` is (inside) an annotations folder, a video or file cannot be read.
    """
    if out is not None:  # before anything is read: the originals are never written over
        folder = RunFolder(run)
        cfg = folder.read_config()
        protected = [Path(p) for p in (cfg.data.labels, labels) if p]
        protected += [Path(str(r["labels"])).parent for r in folder.recorded_videos().values() if r.get("labels")]
        out = check_out_folder(Path(out), protected)
    cfg, found = load_videos(run, videos, labels, predictions, model)
    by_id = {v.video_id: v for v in found}
    if out is not None:
        out = check_out_folder(out, [v.annotations.source.parent for v in found if v.annotations.source])
    user = user or _os_user()
    store = LabelStore(out, found, user)
    frames = FramePool(cfg, {v.video_id: (v.path, v.n_frames) for v in found})
    rows = read_queue(Path(queue), by_id) if queue is not None else []
    return Session(by_id, frames, store, rows, user=user)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: one the system chooses)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as err:
        sock.close()
        raise InputError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err}); "
                         "choose another port (0: any free one)") from None
    return sock


class ReviewServer:
    """One review session served by uvicorn on a bound socket."""

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.session = session
        self.host = host
        self.socket = bind(host, port)
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(session), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def url(self) -> str:
        """The URL to open: it carries the token."""
        return f"{self.base_url}/?token={self.session.token}"

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C)."""
        try:
            self._server.run(sockets=[self.socket])
        finally:
            self.close()

    def start(self) -> ReviewServer:
        """Serve in a background thread; return once it accepts connections."""
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self.socket]},
                                        name="review-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the review server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def close(self) -> None:
        self.session.frames.close()
        self.socket.close()
