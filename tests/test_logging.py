"""`-v` and `--log-file`: a slow real harvest can be diagnosed from its log (503 backoffs, cover retries)."""

from __future__ import annotations

from helpers import assert_one_line_error, run_cli

from equigen.simulator import SimConfig, WorldConfig, simulator_in_thread


def _fetch(sim, tmp_path, *root_options: str, per_genre: int, genres: tuple[str, ...]):
    """`equigen [root options] fetch` of a few genres against `sim`, paced for a local server."""
    genre_flags = [flag for g in genres for flag in ("--genre", g)]
    return run_cli(
        *root_options,
        "fetch",
        "--data-dir",
        str(tmp_path / "data"),
        "--musicbrainz-url",
        sim.url,
        "--coverart-url",
        sim.url,
        "--per-genre",
        str(per_genre),
        *genre_flags,
        "--mb-interval",
        "0.05",
        timeout=300,
    )


def test_verbose_logs_backoffs_and_retries_to_stderr_and_the_log_file(tmp_path):
    log = tmp_path / "fetch.log"
    # 40 % of MusicBrainz answers are an extra 503, 10 % of image answers a transient 500 (besides the flaky covers).
    trouble = SimConfig(mb_error_rate=0.4, image_error_rate=0.1, retry_after=False, rate_limit=0)
    with simulator_in_thread(world_config=WorldConfig.small(seed=3), sim_config=trouble) as sim:
        proc = _fetch(sim, tmp_path, "-v", "--log-file", str(log), per_genre=4, genres=("Jazz",))
        answered_503 = sum(1 for e in sim.log if e.path.startswith("/ws/2/") and e.status == 503)
        flaky_hits = sum(1 for e in sim.log if e.status in (500, 502, 503) and not e.path.startswith("/ws/2/"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert answered_503 > 0 and flaky_hits > 0  # the run met both kinds of trouble
    text = log.read_text()
    assert text.count("MusicBrainz answered 503") == answered_503
    assert "retry 1 of" in text  # a cover retried after a transient failure
    assert "fetch round 1: quota" in text
    assert "MusicBrainz answered 503" in proc.stderr  # -v: the same lines on stderr


def test_without_verbose_stderr_has_no_info_lines_but_the_log_file_does(tmp_path):
    log = tmp_path / "fetch.log"
    with simulator_in_thread(world_config=WorldConfig.small(seed=3), sim_config=SimConfig(rate_limit=0)) as sim:
        proc = _fetch(sim, tmp_path, "--log-file", str(log), per_genre=4, genres=("Jazz",))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert " INFO " not in proc.stderr
    assert "fetch round 1: quota" in log.read_text()


def test_unwritable_log_file_is_a_one_line_error(tmp_path):
    proc = run_cli("--log-file", str(tmp_path / "no" / "such" / "x.log"), "dedup", "--data-dir", str(tmp_path))
    assert_one_line_error(proc, "--log-file")
