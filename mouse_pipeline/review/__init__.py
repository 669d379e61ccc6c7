"""``mouse-pipeline review``: a local web page to look at predictions against the video,
correct them, and save the corrections as labels.

- :mod:`.sources`: per video, the file, its predictions (out-of-fold from the run, or a
  ``predict`` folder) and its annotations;
- :mod:`.frames`: frames decoded and cropped as the run crops them, served as JPEG, with
  the open capture kept for sequential reads;
- :mod:`.store`: the corrected labels: edits, versions (a stale save is refused), atomic
  saves in the project's label format, the who/when sidecar, BORIS export;
- :mod:`.app`: the Starlette app: routes, the token gate, the allow-lists;
- :mod:`.server`: the session opened, the socket bound (127.0.0.1, a free port), uvicorn.

Starlette and uvicorn are the ``review`` extra (``pip install 'mouse-pipeline[review]'``);
nothing here imports them until a server is built, and nothing imports TensorFlow.
"""
