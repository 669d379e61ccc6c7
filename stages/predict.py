"""``mouse-pipeline predict`` and ``score``: outputs for new videos, and scoring any predictions."""

from __future__ import annotations

from pathlib import Path

import click

from mouse_pipeline.annotations import FORMATS
from stages.common import common_options, handle_errors, pose_option, ray_option


@click.command("predict")
@click.option("--run", "run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              required=True, help="Run folder trained with --final.")
@click.option("--videos", type=click.Path(path_type=Path), multiple=True, required=True,
              help="Video files or folders (repeatable).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the per-video CSVs, ethograms and summary.csv.")
@click.option("--model", "model_name", default=None,
              help="Which trained model to use: backbone/model, 'ensemble' (per behaviour a weighted "
                   "mean of the final models but auto, weights and thresholds chosen on their "
                   "validation probabilities) or 'per-behavior' (for each "
                   "behaviour the model with the best cross-validated PR-AUC; needs `report`). "
                   "Default: the best by cross-validated PR-AUC, or the only one.")
@pose_option
@click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Feature cache of these videos (default: the run's extract.cache): their embeddings "
                   "are extracted into it, and features imported with `cache import` are read from it.")
@click.option("--resample", is_flag=True,
              help="Predict a video whose frame rate differs from the training videos' at the "
                   "training rate (nearest frames), then map the labels back to its own frames.")
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None,
              help="The videos' frames per second, where their containers record a wrong rate "
                   "(default: each video's container's rate). Times, and the check against the "
                   "training rate, use it.")
@click.option("--allow-fps-mismatch", is_flag=True,
              help="Predict a video at another frame rate as it is (windows, gap closing and "
                   "minimum bouts then span another time than in training).")
# mouse_pipeline.predict.FORMATS (not imported here: --help must stay light)
@click.option("--format", "formats", type=click.Choice(["csv", "nwb", "boris"]), multiple=True,
              default=("csv",), show_default=True,
              help="Per-video files (repeatable): csv (predictions and bouts CSVs, ethogram PNG), "
                   "nwb (an NWB file: bouts as time intervals, probabilities, the pose used), "
                   "boris (<video>_boris.tsv, a BORIS events table).")
@click.option("--overlay", is_flag=True,
              help="Also write <video>_overlay.mp4: the video with the ethogram strip, current "
                   "labels and probabilities drawn on it.")
@ray_option
@common_options
@handle_errors
def predict_command(run_dir, videos, out, model_name, pose_dir, cache_dir, resample, fps, allow_fps_mismatch,
                    formats, overlay, ray_address, debug, quiet):
    """Label new videos with a run's final model: per-frame CSV, bouts CSV, ethogram, summary.

    Checks every video and extracts its embeddings first (reusing the run's cache when up
    to date; features imported with `cache import` must be imported for these videos
    first), so a bad video stops the command before anything is written. Times come from
    each video's own frame rate (or --fps where containers record a wrong one); a video at
    another rate than the training videos is refused unless --resample or
    --allow-fps-mismatch says what to do.

    \b
    Examples:
      mouse-pipeline predict --run demo_out/run --videos new_videos/ --out predictions/
      mouse-pipeline predict --run runs/thesis --videos new/ --pose new_pose/ --out predictions/
      mouse-pipeline predict --run runs/thesis --videos new/ --model ensemble --out predictions/
      mouse-pipeline predict --run runs/thesis --videos camera30fps/ --resample --out predictions/
      mouse-pipeline predict --run runs/simba --videos new/ --cache new_cache/ --out predictions/
      mouse-pipeline predict --run demo_out/run --videos new_videos/ --format csv --format boris --out p/
      mouse-pipeline predict --run runs/thesis --videos new/ --format csv --format nwb --overlay --out p/
      mouse-pipeline predict --run runs/thesis --videos month_of_videos/ --ray auto --out predictions/
    """
    from mouse_pipeline.paths import check_output_folder
    from mouse_pipeline.predict import predict_videos
    from mouse_pipeline.runlog import run_log

    if resample and allow_fps_mismatch:
        raise click.UsageError("--resample and --allow-fps-mismatch exclude each other; choose one")
    check_output_folder(out, "--out")
    if ray_address is not None:  # the new videos are extracted and predicted on Ray
        from mouse_pipeline.cluster.ray_runtime import require_ray

        require_ray()
    with run_log(run_dir, "predict"):
        written = predict_videos(run_dir, list(videos), out, model_name=model_name,
                                 progress=not quiet, pose_dir=pose_dir, resample=resample,
                                 allow_fps_mismatch=allow_fps_mismatch, cache=cache_dir,
                                 formats=tuple(dict.fromkeys(formats)), overlay=overlay, ray=ray_address,
                                 fps=fps)
    click.echo(f"predictions for {len(written)} video(s) in {out} (summary: {out / 'summary.csv'})")


@click.command("score")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="Label file (thesis layout unless --label-format says otherwise).")
@click.option("--predictions", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              required=True, help="Per-frame predictions CSV (probabilities or 0/1 columns).")
@click.option("--columns", default=None,
              help="behaviour=column,... mapping prediction columns to behaviours, "
                   "e.g. grooming=g_prediction,mid_rearing=mr_prediction")
@click.option("--label-columns", default=None,
              help="column=behaviour,... renaming label file columns (or BORIS behaviours), "
                   "e.g. rearing_mig=mid_rearing")
@click.option("--label-format", type=click.Choice(list(FORMATS)), default="thesis", show_default=True,
              help="As data.label_format in a config: thesis CSV, DeepEthogram, BORIS events or "
                   "aggregated exports.")
@click.option("--fps", type=click.FloatRange(0, min_open=True), default=None,
              help="The video's frames per second, for bout durations in seconds (and BORIS "
                   "times in frames). Default: from the predictions' time_s column; without "
                   "either, score refuses.")
@click.option("--threshold", type=click.FloatRange(0, 1), default=0.5, show_default=True,
              help="Threshold for probability columns.")
@click.option("--csv", "csv_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the metrics table as CSV.")
@common_options
@handle_errors
def score_command(labels, predictions, columns, label_columns, label_format, fps, threshold,
                  csv_out, debug, quiet):
    """Score any per-frame predictions file against labels (another tool, a second annotator).

    \b
    Examples:
      mouse-pipeline score --labels HD_ChR2_510A.csv --predictions results.csv --fps 10 \\
        --label-columns rearing_mig=mid_rearing,rearing_paret=wall_rearing \\
        --columns grooming=g_prediction,mid_rearing=mr_prediction,wall_rearing=wr_prediction
      mouse-pipeline score --labels boris/video1.csv --label-format boris_events \\
        --predictions predictions/video1_predictions.csv
    """
    from mouse_pipeline.paths import check_output_folder
    from mouse_pipeline.scoring import format_table, score_files

    if csv_out is not None:
        if csv_out.is_dir():
            raise click.UsageError(f"--csv {csv_out}: is a folder; name the CSV file to write")
        check_output_folder(csv_out.parent, f"--csv {csv_out}: its folder")

    rows = score_files(labels, predictions, columns=columns, label_columns=label_columns,
                       label_format=label_format, threshold=threshold, csv_out=csv_out, fps=fps)
    click.echo(format_table(rows))
    click.echo(f"bout durations (bout_duration_error_s) in seconds at {rows[0]['fps']:g} fps "
               f"(from {rows[0]['fps_source']})")
    if csv_out:
        click.echo(f"written {csv_out}")


if __name__ == "__main__":
    predict_command()
