"""Label readers: every format to the canonical matrix, and clear errors on bad files."""

import logging

import numpy as np
import pytest

from mouse_pipeline.annotations import (
    Labels,
    check_length,
    find_label_file,
    label_behaviors,
    read_labels,
    write_labels_csv,
)
from mouse_pipeline.errors import ConfigError, InputError

THESIS_MAP = {"rearing_mig": "mid_rearing", "rearing_paret": "wall_rearing"}
BEHAVIORS = ("grooming", "mid_rearing", "wall_rearing")


def bouts(column):
    d = np.diff(np.concatenate([[0], column, [0]]))
    return int((d == 1).sum())


def thesis_like(n=600, seed=0):
    """A matrix with the thesis file's structure (bouts of known count and size)."""
    m = np.zeros((n, 3), dtype=np.int8)
    m[10:60, 0] = 1
    m[200:290, 0] = 1
    m[100:109, 1] = 1
    for start in range(300, 580, 40):
        m[start : start + 12, 2] = 1
    return m


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def test_thesis_reads_with_column_map(tmp_path):
    m = thesis_like()
    lines = ["grooming,rearing_mig,rearing_paret"] + [",".join(map(str, r)) for r in m]
    path = write(tmp_path / "v.csv", "\n".join(lines) + "\n")
    labels = read_labels(path, "thesis", BEHAVIORS, columns=THESIS_MAP)
    assert labels.behaviors == BEHAVIORS
    assert labels.matrix.dtype == np.int8
    assert labels.n_frames == 600
    np.testing.assert_array_equal(labels.matrix, m)
    assert [int(c.sum()) for c in labels.matrix.T] == [140, 9, 84]
    assert [bouts(c) for c in labels.matrix.T] == [2, 1, 7]
    assert labels.source == path


def test_thesis_reorders_and_ignores_extra_columns(tmp_path, caplog):
    path = write(tmp_path / "v.csv", "a,b,c\n1,0,0\n0,1,-1\n")
    with caplog.at_level(logging.DEBUG, logger="mouse_pipeline.annotations"):
        labels = read_labels(path, "thesis", ["c", "a"])
    np.testing.assert_array_equal(labels.matrix, [[0, 1], [-1, 0]])
    assert "'b'" in caplog.text


def test_thesis_pandas_index_bom_crlf_trailing_blank(tmp_path):
    text = ",grooming,rearing\r\n0,1,0\r\n1,0,1\r\n\r\n\r\n"
    path = write(tmp_path / "v.csv", text, encoding="utf-8-sig")
    labels = read_labels(path, "thesis", ["grooming", "rearing"])
    np.testing.assert_array_equal(labels.matrix, [[1, 0], [0, 1]])


def test_thesis_tab_separated(tmp_path):
    path = write(tmp_path / "v.tsv", "a\tb\n1\t0\n")
    np.testing.assert_array_equal(read_labels(path, "thesis", ["b", "a"]).matrix, [[0, 1]])


@pytest.mark.parametrize("bad", ["2", "0.5", "x", "NaN", ""])
def test_thesis_bad_value_names_row_and_column(tmp_path, bad):
    path = write(tmp_path / "v.csv", f"a,b\n0,0\n1,{bad}\n0,0\n")
    with pytest.raises(InputError, match=r"v\.csv, data row 2 \(line 3\), column 'b'") as err:
        read_labels(path, "thesis", ["a", "b"])
    assert "\n" not in str(err.value)
    assert f"value {bad!r} is not 0, 1 or -1" in str(err.value)  # a plain str, not np.str_('2')


def test_thesis_ragged_row(tmp_path):
    path = write(tmp_path / "v.csv", "a,b\n0,0\n1\n")
    with pytest.raises(InputError, match="data row 2 .line 3.: 1 cells"):
        read_labels(path, "thesis", ["a", "b"])


def test_missing_behaviour_lists_columns_found(tmp_path):
    path = write(tmp_path / "v.csv", "grooming,rearing_mig\n0,0\n")
    with pytest.raises(
        InputError,
        match=r"lacks behaviour\(s\) \['wall_rearing'\].*"
        r"\['grooming', 'rearing_mig'\]",
    ):
        read_labels(path, "thesis", BEHAVIORS, columns=THESIS_MAP)


def test_missing_file_and_unknown_format(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_labels(tmp_path / "nope.csv", "thesis", ["a"])
    path = write(tmp_path / "v.csv", "a\n0\n")
    with pytest.raises(ConfigError, match="unknown label format 'xls'"):
        read_labels(path, "xls", ["a"])


def test_deepethogram_drops_background_keeps_unlabelled(tmp_path):
    text = ",background,face_groom,rear\n0,1,0,0\n1,0,1,0\n2,-1,-1,-1\n3,0,0,1\n"
    path = write(tmp_path / "deg.csv", text)
    labels = read_labels(
        path, "deepethogram", ["rear", "grooming"], columns={"face_groom": "grooming"}
    )
    np.testing.assert_array_equal(labels.matrix, [[0, 0], [0, 1], [-1, -1], [1, 0]])


def test_deepethogram_index_must_be_consecutive(tmp_path):
    path = write(tmp_path / "deg.csv", ",background,a\n0,1,0\n2,0,1\n")
    with pytest.raises(InputError, match="data row 2 .line 3.: frame index 2 follows 0"):
        read_labels(path, "deepethogram", ["a"])


def test_deepethogram_index_must_start_at_frame_0(tmp_path):
    # a 1-based index (1, 2, 3, 4): the file says 'a' at frames 2 and 3, which reading rows
    # as frames 0, 1, 2, ... would put at frames 1 and 2 without a word
    path = write(tmp_path / "deg.csv", ",background,a\n1,1,0\n2,0,1\n3,0,1\n4,1,0\n")
    with pytest.raises(InputError, match="data row 1 .line 2.: frame index starts at 1, not 0"):
        read_labels(path, "deepethogram", ["a"])


BORIS_EVENTS = """Observation id,obs1
Observation date,2022-01-01
Description,
Time offset (s),0.000

Time,Media file path,Total length,FPS,Subject,Behavior,Behavioral category,Comment,Status
0.3,v.mp4,2,10,,grooming,,,START
0.6,v.mp4,2,10,,grooming,,,STOP
0.5,v.mp4,2,10,,sniff,,,POINT
1.0,v.mp4,2,10,,rearing,,,START
1.25,v.mp4,2,10,,rearing,,,STOP
1.7,v.mp4,2,10,,grooming,,,START
2.0,v.mp4,2,10,,grooming,,,STOP
"""


def test_boris_events_half_open_bouts(tmp_path):
    path = write(tmp_path / "events.csv", BORIS_EVENTS)
    labels = read_labels(path, "boris_events", ["grooming", "rearing"], fps=10, n_frames=20)
    expected = np.zeros((20, 2), dtype=np.int8)
    expected[3:6, 0] = 1  # 0.3 <= i/10 < 0.6
    expected[17:20, 0] = 1
    expected[10:13, 1] = 1  # 1.0 <= i/10 < 1.25 -> frames 10, 11, 12
    np.testing.assert_array_equal(labels.matrix, expected)


def test_boris_events_behavior_type_column_and_absent_behaviour(tmp_path, caplog):
    text = "Subject,Behavior,Behavior type,Time\nm,groom,START,0.0\nm,groom,STOP,0.2\n"
    path = write(tmp_path / "events.csv", text)
    with caplog.at_level(logging.WARNING):
        labels = read_labels(
            path,
            "boris_events",
            ["grooming", "rearing"],
            columns={"groom": "grooming"},
            fps=10,
            n_frames=4,
        )
    np.testing.assert_array_equal(labels.matrix, [[1, 0], [1, 0], [0, 0], [0, 0]])
    assert "no bout of 'rearing'" in caplog.text and "['groom']" in caplog.text


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        (
            "0.1,a,START\n0.2,a,START\n0.3,a,STOP\n",
            "line 3: START of 'a' while the START at line 2",
        ),
        ("0.1,a,STOP\n", "line 2: STOP of 'a' without a START"),
        ("0.1,a,START\n", "line 2: START of 'a' has no STOP"),
        ("0.5,a,START\n0.1,a,STOP\n", "line 3: STOP of 'a' at 0.1 s is before"),
        ("abc,a,START\n", "line 2, column 'Time': bad time 'abc'"),
    ],
)
def test_boris_events_unmatched(tmp_path, rows, match):
    path = write(tmp_path / "events.csv", "Time,Behavior,Status\n" + rows)
    with pytest.raises(InputError, match=match):
        read_labels(path, "boris_events", ["a"], fps=10, n_frames=10)


def test_boris_needs_fps_and_n_frames_and_header(tmp_path):
    path = write(tmp_path / "events.csv", "Time,Behavior,Status\n")
    with pytest.raises(ConfigError, match="needs the video's fps"):
        read_labels(path, "boris_events", ["a"], n_frames=10)
    with pytest.raises(InputError, match="needs the video's frame count"):
        read_labels(path, "boris_events", ["a"], fps=10)
    other = write(tmp_path / "other.csv", "a,b\n0,1\n")
    with pytest.raises(InputError, match="no header row with columns"):
        read_labels(other, "boris_events", ["a"], fps=10, n_frames=10)


def test_boris_bout_past_video_end(tmp_path):
    path = write(tmp_path / "events.csv", "Time,Behavior,Status\n5.0,a,START\n6.0,a,STOP\n")
    with pytest.raises(InputError, match="frame 50, past the video's 20 frames"):
        read_labels(path, "boris_events", ["a"], fps=10, n_frames=20)


def test_boris_aggregated(tmp_path):
    text = (
        "Observation id,Subject,Behavior,Behavior type,Start (s),Stop (s),Duration (s)\n"
        "o,m,rearing,STATE,0.0,0.35,0.35\n"
        "o,m,sniff,POINT,0.5,NA,NA\n"
        "o,m,rearing,STATE,1.1,9.9,8.8\n"
    )
    path = write(tmp_path / "agg.csv", text)
    labels = read_labels(path, "boris_aggregated", ["rearing"], fps=10, n_frames=15)
    expected = np.zeros(15, dtype=np.int8)
    expected[0:4] = 1  # 0, 0.1, 0.2, 0.3 < 0.35
    expected[11:15] = 1  # clipped at the video end
    np.testing.assert_array_equal(labels.matrix[:, 0], expected)



@pytest.mark.parametrize("fps", [30.0, 30000 / 1001, 60.0, 25.0, 10.0, 240.0])
def test_boris_times_rounded_to_the_millisecond_keep_their_frames(tmp_path, fps):
    # BORIS writes the player's time of the coded frame rounded to the millisecond: at 30 fps
    # a bout coded from frame 2 to frame 5 (exclusive) is written 0.067 / 0.167 s, which is
    # 2.01 / 5.01 frames; taking the next frame at or after it made frames 3..5 of 2..4.
    n = 90
    truth = np.zeros(n, dtype=np.int8)
    events, aggregated = ["Time,Behavior,Status"], ["Behavior,Start (s),Stop (s)"]
    for s in range(1, n - 2, 4):  # bouts s, s + 1: starts and stops at every phase of 1/fps
        truth[s : s + 2] = 1
        start, stop = f"{round(s / fps, 3):.3f}", f"{round((s + 2) / fps, 3):.3f}"
        events += [f"{start},a,START", f"{stop},a,STOP"]
        aggregated.append(f"a,{start},{stop}")
    for fmt, rows in (("boris_events", events), ("boris_aggregated", aggregated)):
        path = write(tmp_path / f"{fmt}.csv", "\n".join(rows) + "\n")
        labels = read_labels(path, fmt, ["a"], fps=fps, n_frames=n)
        np.testing.assert_array_equal(labels.matrix[:, 0], truth, err_msg=f"{fmt} at {fps} fps")

def test_boris_time_offset_is_subtracted(tmp_path):
    # BORIS adds the observation's time offset (here 12.5 s) to every time it exports: the
    # bout at 0.3..0.6 s of the video (frames 3, 4, 5 at 10 fps) is written 12.8..13.1 s,
    # which read as it stands are frames 128..130 of this 200-frame video, without a word
    expected = np.zeros((200, 1), dtype=np.int8)
    expected[3:6] = 1
    files = {
        "events_column": ("boris_events", "Observation id,Time offset (s),Behavior,Behavior type,Time\n"
                          "o,12.500,a,START,12.800\no,12.500,a,STOP,13.100\n"),
        "events_metadata": ("boris_events", "Observation id,o\nTime offset (s),12.500\n\n"
                            "Time,Behavior,Status\n12.8,a,START\n13.1,a,STOP\n"),
        "aggregated": ("boris_aggregated", "Observation id,Time offset (s),Behavior,Start (s),Stop (s)\n"
                       "o,12.500,a,12.800,13.100\n"),
    }
    for name, (fmt, text) in files.items():
        path = write(tmp_path / f"{name}.csv", text)
        labels = read_labels(path, fmt, ["a"], fps=10, n_frames=200)
        np.testing.assert_array_equal(labels.matrix, expected, err_msg=name)
    early = write(tmp_path / "early.csv", "Time offset (s),Behavior,Start (s),Stop (s)\n5,a,4.0,6.0\n")
    with pytest.raises(InputError, match=r"line 2, column 'Start \(s\)': 4.0 s less the time offset 5 s is before"):
        read_labels(early, "boris_aggregated", ["a"], fps=10, n_frames=20)


def test_check_length(tmp_path, caplog):
    labels = Labels(("a",), np.ones((10, 1), dtype=np.int8), tmp_path / "v.csv")
    assert check_length(labels, 10, 0, "v") is labels
    with caplog.at_level(logging.WARNING):
        padded = check_length(labels, 12, 2, "v")
    assert padded.matrix[:, 0].tolist() == [1] * 10 + [-1, -1]
    assert "10 frames, video has 12" in caplog.text
    assert check_length(labels, 8, 2, "v").n_frames == 8
    with pytest.raises(
        InputError,
        match=r"v\.csv have 10 frames but video 'v' has 13 .*"
        r"data\.max_frame_mismatch=2",
    ):
        check_length(labels, 13, 2, "v")


def test_write_read_round_trip(tmp_path):
    m = thesis_like()
    m[5:8, 1] = -1
    labels = Labels(BEHAVIORS, m)
    write_labels_csv(tmp_path / "out.csv", labels)
    back = read_labels(tmp_path / "out.csv", "thesis", BEHAVIORS)
    np.testing.assert_array_equal(back.matrix, m)


def test_labels_validates_shape_and_values():
    with pytest.raises(ValueError, match="shape"):
        Labels(("a", "b"), np.zeros((3, 1)))
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        Labels(("a",), np.full((3, 1), 2))
    assert Labels(("a",), np.zeros((3, 1), dtype=int)).matrix.dtype == np.int8


# -- finding a video's label file; what a file holds; files that cannot be read for sure ----


def test_find_label_file_refuses_two_candidates_naming_both(tmp_path):
    write(tmp_path / "v1.csv", "a\n0\n")
    write(tmp_path / "v2.tsv", "a\n0\n")
    assert find_label_file(tmp_path, "v1") == tmp_path / "v1.csv"
    assert find_label_file(tmp_path, "v2") == tmp_path / "v2.tsv"
    assert find_label_file(tmp_path, "v3") is None
    write(tmp_path / "v1.txt", "a\n0\n")
    with pytest.raises(InputError, match=r"v1\.csv: video v1 has 2 label files \(v1\.csv, v1\.txt\); "
                                         r"keep one of them in "):
        find_label_file(tmp_path, "v1")
    write(tmp_path / "v2.CSV", "a\n0\n")
    with pytest.raises(InputError, match=r"\(v2\.CSV, v2\.tsv\)"):
        find_label_file(tmp_path, "v2")
    with pytest.raises(InputError, match=r"nope: labels folder does not exist; set data\.labels"):
        find_label_file(tmp_path / "nope", "v1")
    with pytest.raises(InputError, match=r"v1\.csv: labels folder is a file, not a folder"):
        find_label_file(tmp_path / "v1.csv", "v1")


def test_a_label_file_that_is_a_folder_is_refused(tmp_path):
    (tmp_path / "v1.csv").mkdir()
    with pytest.raises(InputError, match=r"v1\.csv: is a folder, not a label file"):
        find_label_file(tmp_path, "v1")


def test_find_label_file_by_the_real_stem_or_the_id(tmp_path):
    """A video ``mouse 000.mp4`` (id ``mouse_000``): its labels by either name, not both."""
    write(tmp_path / "mouse 000.csv", "a\n0\n")
    assert find_label_file(tmp_path, ("mouse 000", "mouse_000")) == tmp_path / "mouse 000.csv"
    write(tmp_path / "mouse_000.tsv", "a\n0\n")
    with pytest.raises(InputError, match=r"video mouse 000 has 2 label files \(mouse 000\.csv, mouse_000\.tsv\)"):
        find_label_file(tmp_path, ("mouse 000", "mouse_000"))


@pytest.mark.parametrize("header,first,expected", [
    ("frame,grooming,rear", ["5", "6", "7"], ["grooming", "rear"]),        # named index
    ("Unnamed: 0,grooming,rear", ["0", "1", "2"], ["grooming", "rear"]),   # pandas' index
    (",grooming,rear", ["0", "1", "2"], ["grooming", "rear"]),
    ("t,grooming,rear", ["0", "1", "2"], ["grooming", "rear"]),            # 0..N-1 integers
    ("t,grooming,rear", ["0", "1", "0"], ["t", "grooming", "rear"]),       # 0/1: a behaviour
])
def test_label_behaviors_leaves_out_an_index_column(tmp_path, header, first, expected):
    path = write(tmp_path / "v.csv", header + "\n" + "".join(f"{c},0,1\n" for c in first))
    assert label_behaviors(path, "thesis") == expected
    assert label_behaviors(path, "thesis", {"rear": "wall_rearing"})[-1] == "wall_rearing"


def test_label_behaviors_of_deepethogram_and_boris(tmp_path):
    deg = write(tmp_path / "deg.csv", "frame,background,face_groom,rear\n0,1,0,0\n1,0,1,0\n")
    assert label_behaviors(deg, "deepethogram") == ["face_groom", "rear"]
    events = write(tmp_path / "events.csv", BORIS_EVENTS)
    assert label_behaviors(events, "boris_events", {"rearing": "wall_rearing"}) == ["grooming", "wall_rearing"]


def test_a_column_twice_is_refused_naming_it(tmp_path):
    path = write(tmp_path / "v.csv", "grooming,rear,grooming\n0,0,1\n")
    with pytest.raises(InputError, match=r"v\.csv: column 'grooming' appears twice; remove or rename one"):
        read_labels(path, "thesis", ["grooming"])


def test_header_only_label_file_is_refused(tmp_path):
    for fmt, text in (("thesis", "grooming,rear\n\n"), ("deepethogram", ",background,grooming\n")):
        path = write(tmp_path / f"{fmt}.csv", text)
        with pytest.raises(InputError, match=rf"{fmt}\.csv: the label file has a header but no data rows"):
            read_labels(path, fmt, ["grooming"])


def test_non_utf8_label_file_names_byte_offset_and_line(tmp_path):
    path = tmp_path / "v.csv"
    path.write_bytes(b"grooming,note\n0,ok\n1,caf\xe9\n")
    with pytest.raises(InputError, match=r"v\.csv: this label file is not UTF-8 text: byte 0xe9 at byte "
                                         r"offset 24 \(line 3\) cannot be decoded; save it as UTF-8") as err:
        read_labels(path, "thesis", ["grooming"])
    assert "\n" not in str(err.value)


def test_a_thesis_file_whose_pandas_index_does_not_count_from_0_is_warned_about(tmp_path, caplog):
    from mouse_pipeline.annotations import read_labels as read

    good = tmp_path / "good.csv"
    good.write_text(",grooming\n0,0\n1,1\n2,1\n")
    cut = tmp_path / "cut.csv"  # rows 100-102 of a longer table, as pandas writes a slice
    cut.write_text(",grooming\n100,0\n101,1\n102,1\n")
    with caplog.at_level("WARNING", logger="mouse_pipeline.annotations"):
        assert read(good, "thesis", ("grooming",)).matrix[:, 0].tolist() == [0, 1, 1]
    assert "index column" not in caplog.text
    with caplog.at_level("WARNING", logger="mouse_pipeline.annotations"):
        assert read(cut, "thesis", ("grooming",)).matrix[:, 0].tolist() == [0, 1, 1]  # read in order
    assert f"label file {cut}: its index column does not count 0, 1, 2, ... (row 1 says 100)" in caplog.text
