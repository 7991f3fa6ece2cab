"""The `equigen` command line: one thin typer command per stage, clear one-line errors."""

from __future__ import annotations

import gc
import logging
import sqlite3
import sys
from pathlib import Path

import typer
from rich.console import Console

from equigen import __version__
from equigen.core.defaults import DEFAULT_MARGIN, DEFAULT_PER_GENRE, DEFAULT_RATIOS, DEFAULT_SHARD_ROWS
from equigen.core.errors import EXIT_INTERRUPTED, EXIT_PROBLEMS, EXIT_USER_ERROR, EquigenError, inert

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    help="Build genre-labelled, balanced, leakage-free album-cover datasets from MusicBrainz and the "
    "Cover Art Archive, and benchmark ResNet vs EfficientNet on them. "
    "Pipeline: fetch -> dedup -> balance -> split -> verify -> baseline (or `equigen demo` for all of it, offline).",
)
console = Console(stderr=True)
out = Console()

# Options shared by the verbs. None means "not given": environment (EQUIGEN_*) then defaults apply.
DataDir = typer.Option(
    None, "--data-dir", "-d", help="Working folder of one dataset build [env EQUIGEN_DATA_DIR; default ./equigen-data]."
)
MusicBrainzUrl = typer.Option(
    None,
    "--musicbrainz-url",
    help="MusicBrainz base URL: the real service, a mirror, or the simulator [default https://musicbrainz.org].",
)
CoverartUrl = typer.Option(
    None, "--coverart-url", help="Cover Art Archive base URL [default https://coverartarchive.org]."
)
Contact = typer.Option(
    None,
    "--contact",
    help="E-mail or URL for the User-Agent; required by MusicBrainz for non-local use [env EQUIGEN_CONTACT].",
)
Taxonomy = typer.Option(None, "--taxonomy", help="Genre taxonomy TOML (default: the built-in manifests/genres.toml).")
Seed = typer.Option(0, "--seed", help="Random seed; the same seed gives the same result.")
Threshold = typer.Option(
    None,
    "--threshold",
    help="Max pHash Hamming distance for near-duplicates [default 10; chosen on the simulator's planted duplicates, see README]; fetch counts duplicates with the radius dedup will use.",
)
# fetch and balance take the same three: fetch counts what balance will keep, so give both the same values.
PerGenre = typer.Option(
    DEFAULT_PER_GENRE,
    "--per-genre",
    help="Covers per genre: balance selects exactly this many; fetch stops once every genre holds enough usable covers for it (ok, one per exact or near-duplicate cluster, labelled, within the artist cap) plus --margin.",
)
ArtistCap = typer.Option(
    None,
    "--artist-cap",
    help="Max covers per artist within a genre [default max(2, ceil(per_genre/100)), about 1%]; fetch downloads none beyond it.",
)
MinConfidence = typer.Option(
    0.0,
    "--min-confidence",
    help="Only covers whose label confidence (the winning genre's share of the release group's MusicBrainz genre tag votes, 0 to 1) is at least this; above 0, covers of unknown confidence are left out too [default 0: every labelled cover]. Use the same value with fetch and balance.",
)


def _version(value: bool) -> None:
    if value:
        out.print(f"equigen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    verbose: int = typer.Option(
        0,
        "--verbose",
        "-v",
        count=True,
        help="Log retries, backoffs and fetch rounds (-v); also every request and redirect (-vv).",
    ),
    log_file: Path | None = typer.Option(
        None,
        "--log-file",
        help="Also append the log to this file (at -v's level, INFO if -v is not given), for diagnosing a long harvest afterwards.",
    ),
) -> None:
    _configure_logging(verbose, log_file)


def _configure_logging(verbose: int, log_file: Path | None) -> None:
    """Module loggers (equigen.*) to stderr with -v, and to --log-file; warnings always reach stderr."""
    level = logging.DEBUG if verbose >= 2 else logging.INFO if verbose == 1 or log_file else logging.WARNING
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    root = logging.getLogger("equigen")
    root.setLevel(level)
    for h in list(root.handlers):
        root.removeHandler(h)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.DEBUG if verbose >= 2 else logging.INFO if verbose else logging.WARNING)
    stderr.setFormatter(fmt)
    root.addHandler(stderr)
    if log_file is not None:
        try:
            handler = _LogFileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise EquigenError(f"cannot open --log-file {log_file}: {exc.strerror or exc}") from None
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.propagate = False


class _LogFileHandler(logging.FileHandler):
    """--log-file that, when the disk fills or the file goes away, says so once and stops writing there, instead of
    logging's "--- Logging error ---" traceback on every line while the run goes on."""

    failed = False

    def handleError(self, record) -> None:  # noqa: N802 (logging's name)
        if self.failed:
            return
        self.failed = True
        exc = sys.exc_info()[1]
        detail = getattr(exc, "strerror", None) or exc or "write failed"
        console.print(
            f"[bold yellow]warning:[/] --log-file {inert(self.baseFilename)}: {inert(detail)}; "
            "logging there stops (the run goes on; -v still logs to the terminal)",
            highlight=False,
            soft_wrap=True,
        )
        logging.getLogger("equigen").removeHandler(self)


def _settings(**flags):
    from equigen.core.config import load_settings

    return load_settings(**flags)


@app.command()
def fetch(
    data_dir: Path | None = DataDir,
    musicbrainz_url: str | None = MusicBrainzUrl,
    coverart_url: str | None = CoverartUrl,
    contact: str | None = Contact,
    taxonomy: Path | None = Taxonomy,
    per_genre: int = PerGenre,
    margin: float = typer.Option(
        DEFAULT_MARGIN,
        "--margin",
        help="Extra usable covers per genre, as a fraction of --per-genre: a small safety for what fetch cannot know (a larger dedup --threshold, covers added later); duplicates and the artist cap are counted already.",
    ),
    artist_cap: int | None = ArtistCap,
    min_confidence: float = MinConfidence,
    threshold: int | None = Threshold,
    genres: list[str] | None = typer.Option(None, "--genre", help="Only these genres (repeatable)."),
    concurrency: int | None = typer.Option(None, "--concurrency", help="Simultaneous cover downloads [default 32]."),
    thumbnail: int | None = typer.Option(
        None, "--thumbnail", help="Cover Art Archive thumbnail size: 250, 500 or 1200 [default 500]."
    ),
    mb_interval: float | None = typer.Option(
        None,
        "--mb-interval",
        help="Seconds between MusicBrainz requests [default 1.0; lower only for your own mirror].",
    ),
    include_types: list[str] | None = typer.Option(
        None,
        "--include-secondary",
        help="Keep these secondary types (compilation, live, soundtrack, ...) which are skipped by default.",
    ),
    skip_discovery: bool = typer.Option(False, "--skip-discovery", help="Only download covers already in the catalog."),
    skip_download: bool = typer.Option(False, "--skip-download", help="Only discover release groups."),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="Rebuild a published dataset: fetch exactly the items of this manifest.parquet (sha256 checked).",
    ),
    from_dump: Path | None = typer.Option(
        None,
        "--from-dump",
        help="Discover from this MusicBrainz JSON dump instead of searching: release-group.tar.xz (streamed, never extracted) or its extracted mbdump/release-group; no MusicBrainz request.",
    ),
    dump_seed: int | None = typer.Option(
        None,
        "--seed",
        help="With --from-dump: the seed of the order each genre's dump candidates are tried in [default 0].",
    ),
    oversample: float | None = typer.Option(None, "--oversample", hidden=True),
) -> None:
    """Harvest release groups (MusicBrainz search by genre tag) and their front covers (Cover Art Archive) until every genre can be balanced.

    Each genre searches its broad tag names first, then subgenre names while it is still short, and
    downloads covers in rounds until it holds --per-genre usable covers plus --margin, or its tags run
    out (then one 'short:' line says so). Resumable: re-running the same command continues where a
    killed run stopped and ends with the same catalog.
    """
    if oversample is not None:
        raise EquigenError(
            "--oversample is gone: fetch now stops when every genre can be balanced; "
            "--margin sets a small extra share (default 0.01)"
        )
    settings = _settings(
        data_dir=data_dir,
        musicbrainz_url=musicbrainz_url,
        coverart_url=coverart_url,
        contact=contact,
        concurrency=concurrency,
        thumbnail=thumbnail,
        mb_interval=mb_interval,
        taxonomy_path=taxonomy,
    )
    if manifest is not None:
        if from_dump is not None:
            raise EquigenError("--manifest rebuilds a published dataset: it cannot go with --from-dump")
        _start_download_processes_early()
        from equigen.harvest.rebuild import run_rebuild

        run_rebuild(settings, manifest, console=console)
        return
    from equigen.core.options import FetchOptions

    options = FetchOptions(
        per_genre=per_genre,
        margin=margin,
        artist_cap=artist_cap,
        min_confidence=min_confidence,
        threshold=threshold,
        genres=tuple(genres or ()),
        include_secondary=tuple(include_types or ()),
        discover=not skip_discovery,
        download=not skip_download,
        from_dump=from_dump,
        seed=dump_seed,
    )
    if skip_discovery and not skip_download:
        _start_download_processes_early()
    from equigen.harvest.fetch import run_fetch  # heavy (aiohttp, pandas): after the options are checked

    run_fetch(settings, options, console=console)


def _start_download_processes_early() -> None:
    """A download-only run: the forkserver's imports run on another core while this one imports the verb."""
    from equigen.harvest.forkserver import start_forkserver_early

    start_forkserver_early()


@app.command()
def dedup(
    data_dir: Path | None = DataDir,
    threshold: int | None = Threshold,
) -> None:
    """Find exact (sha256) and near (pHash) duplicate covers, cluster them, pick one canonical cover per cluster."""
    from equigen.core.options import DedupOptions

    options, settings = DedupOptions(threshold=threshold), _settings(data_dir=data_dir)
    from equigen.curate.dedup import run_dedup  # heavy modules only once the options are checked

    run_dedup(settings, options, console=console)


@app.command()
def balance(
    data_dir: Path | None = DataDir,
    per_genre: int = PerGenre,
    seed: int = Seed,
    artist_cap: int | None = ArtistCap,
    allow_short: bool = typer.Option(
        False,
        "--allow-short",
        help="Keep genres that cannot reach --per-genre (with all they have) instead of failing.",
    ),
    min_confidence: float = MinConfidence,
) -> None:
    """Choose exactly N canonical, unambiguous covers per genre, seeded and artist-capped."""
    from equigen.core.options import BalanceOptions

    options, settings = (
        BalanceOptions(per_genre, seed, artist_cap, allow_short, min_confidence),
        _settings(data_dir=data_dir),
    )
    from equigen.curate.balance import run_balance

    run_balance(settings, options, console=console)


@app.command()
def split(
    data_dir: Path | None = DataDir,
    ratios: str = typer.Option(
        ",".join(f"{r:.2f}" for r in DEFAULT_RATIOS), "--ratios", help="train,validation,test fractions."
    ),
    seed: int = Seed,
    shard_rows: int = typer.Option(DEFAULT_SHARD_ROWS, "--shard-rows", help="Rows per Parquet shard."),
    samples_per_split: bool = typer.Option(
        False,
        "--samples-per-split",
        help="Also draw plots/samples-validation.jpg and plots/samples-test.jpg, the contact sheet of 12 covers per genre that plots/samples.jpg shows for train.",
    ),
) -> None:
    """Split the balanced selection by artist and duplicate-cluster groups, stratified by genre; write the dataset."""
    from equigen.core.options import SplitOptions

    options = SplitOptions(_parse_ratios(ratios), seed, shard_rows, samples_per_split)
    settings = _settings(data_dir=data_dir)
    from equigen.publish.split import run_split

    run_split(settings, options, console=console)


def _parse_ratios(text: str) -> tuple[float, float, float]:
    """Text to numbers only; SplitOptions checks them (finite, positive, summing to 1)."""
    try:
        return tuple(float(x) for x in text.split(","))  # type: ignore[return-value]
    except ValueError:
        raise EquigenError(f"--ratios must be three comma-separated numbers, got {text!r}") from None


@app.command()
def verify(
    dataset_dir: Path = typer.Argument(
        ..., help="A dataset folder written by `equigen split` (the one holding data/ and README.md)."
    ),
    radius: int | None = typer.Option(
        None, "--radius", help="pHash distance counted as a near-duplicate leak [default: dedup's threshold]."
    ),
) -> None:
    """Audit a dataset folder, trusting nothing stored: counts, artist and near-duplicate leakage, decoding, checksums, schema."""
    from equigen.core.options import VerifyOptions

    options = VerifyOptions(radius=radius)
    from equigen.publish.verify import run_verify

    ok = run_verify(dataset_dir, options, console=console)
    if not ok:
        raise typer.Exit(EXIT_PROBLEMS)


@app.command()
def baseline(
    data_dir: Path | None = DataDir,
    dataset: Path | None = typer.Option(None, "--dataset", help="Dataset folder [default <data-dir>/dataset]."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Where runs go [default <data-dir>/runs]."),
    models: str = typer.Option(
        "resnet50,efficientnet_b0", "--models", help="Comma-separated torchvision resnet*/efficientnet_b* names."
    ),
    epochs: int = typer.Option(10, "--epochs"),
    image_size: int | None = typer.Option(
        None,
        "--image-size",
        help="Input side in pixels [default: the pretrained weights' crop size (224), 128 from scratch].",
    ),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(1e-3, "--lr", help="Peak learning rate (after warm-up, then cosine decay)."),
    weight_decay: float = typer.Option(0.05, "--weight-decay"),
    warmup_epochs: float = typer.Option(1.0, "--warmup-epochs"),
    optimizer: str = typer.Option("adamw", "--optimizer", help="adamw or sgd."),
    label_smoothing: float = typer.Option(0.1, "--label-smoothing"),
    patience: int = typer.Option(
        3, "--patience", help="Early stopping: epochs without validation macro-F1 improvement."
    ),
    seeds: str = typer.Option(
        "0,1,2",
        "--seeds",
        help="Train each model once per seed (comma-separated); the report gives mean ± sd over seeds and bootstrap 95 % intervals over test items.",
    ),
    workers: int = typer.Option(2, "--workers", help="DataLoader worker processes decoding images."),
    pretrained: bool = typer.Option(
        True,
        "--pretrained/--no-pretrained",
        help="Start from torchvision's ImageNet weights (each model's DEFAULT; downloaded once into $TORCH_HOME/hub/checkpoints, then offline) with their own preprocessing; --no-pretrained trains from scratch.",
    ),
    weights: list[str] | None = typer.Option(
        None,
        "--weights",
        help="[MODEL=]PATH of a local torchvision ImageNet state dict to start from instead of the cached download (repeatable).",
    ),
    backbone_lr_scale: float | None = typer.Option(
        None,
        "--backbone-lr-scale",
        help="The backbone learns at --lr x this, the new head at --lr [default 0.1 when starting from ImageNet weights, 1 from scratch].",
    ),
    freeze_epochs: int = typer.Option(
        0,
        "--freeze-epochs",
        help="Train only the new head for this many epochs (backbone learning rate 0), then fine-tune everything.",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run named --name (default: the newest) from its last checkpoint."
    ),
    max_train_batches: int | None = typer.Option(
        None, "--max-train-batches", help="Cap batches per epoch (quick smoke runs)."
    ),
    name: str | None = typer.Option(None, "--name", help="Run folder name under --runs-dir [default: a timestamp]."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="Mixed precision on CUDA (bf16 where supported)."),
    progress: bool = typer.Option(
        True, "--progress/--no-progress", help="Progress bars (off for logs; the per-epoch lines stay)."
    ),
) -> None:
    """Train and compare image classifiers (ResNet vs EfficientNet) on the dataset's shards; write metrics, plots and a report.

    Under `torchrun --nproc_per_node=K -m equigen.cli baseline ...` it trains with DistributedDataParallel.
    """
    import os

    from equigen.baseline import BaselineConfig, parse_seeds, parse_weights_option, run_baseline

    settings = _settings(data_dir=data_dir)
    cfg = BaselineConfig(
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        warmup_epochs=warmup_epochs,
        label_smoothing=label_smoothing,
        patience=patience,
        seeds=parse_seeds(seeds),
        workers=workers,
        pretrained=pretrained,
        backbone_lr_scale=backbone_lr_scale,
        freeze_epochs=freeze_epochs,
        weights=parse_weights_option(weights) if weights else None,
        resume=resume,
        run_name=name,
        device=device,
        amp=amp,
        max_train_batches=max_train_batches,
    )
    result = run_baseline(dataset or settings.dataset_dir, runs_dir or settings.runs_dir, cfg, progress=progress)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, one line from rank 0
        if result.comparison:
            out.print(result.comparison, markup=False, highlight=False, soft_wrap=True)
        out.print(f"report: {result.report}", markup=False, highlight=False, soft_wrap=True)


@app.command()
def demo(
    data_dir: Path = typer.Option(
        Path("./equigen-demo"), "--data-dir", "-d", help="Working folder for the demo build."
    ),
    per_genre: int = typer.Option(40, "--per-genre", help="Covers per genre in the demo dataset."),
    epochs: int = typer.Option(
        8, "--epochs", help="Baseline epochs per model and seed (EfficientNet from scratch needs ~7 to leave chance)."
    ),
    image_size: int = typer.Option(
        48, "--image-size", help="Baseline input size in pixels (48: training dominates the demo's time)."
    ),
    models: str = typer.Option(
        "resnet18,efficientnet_b0", "--models", help="Comma-separated torchvision models to compare."
    ),
    seeds: str = typer.Option(
        "0",
        "--seeds",
        help="Baseline seeds per model: one gives the paired test over the test covers (bootstrap interval, McNemar); more add mean ± sd over seeds.",
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Delete the demo folder first instead of resuming."),
) -> None:
    """Run the whole pipeline offline against the built-in simulator: fetch, dedup, balance, split, verify, baseline.

    Re-running resumes the fetch and recomputes the later stages (same seed, same dataset); --fresh starts clean.
    """
    from equigen.baseline import parse_seeds
    from equigen.demo import run_demo

    run_demo(
        data_dir,
        per_genre=per_genre,
        epochs=epochs,
        seeds=parse_seeds(seeds),
        fresh=fresh,
        image_size=image_size,
        models=tuple(m.strip() for m in models.split(",") if m.strip()),
        console=console,
    )


@app.command()
def simulate(
    port: int = typer.Option(8080, "--port", help="Port on 127.0.0.1 to serve on."),
    seed: int = Seed,
    host: str = typer.Option("127.0.0.1", "--host"),
    cover_px: int | None = typer.Option(
        None,
        "--cover-px",
        help="Serve every cover at this side (small for quick tests) instead of the requested thumbnail size.",
    ),
    art_coverage: float | None = typer.Option(
        None,
        "--art-coverage",
        min=0.0,
        max=1.0,
        help="Share of release groups (0-1) with a front cover, the same in every genre, e.g. 0.5 [default: spread from 0.90 down to 0.45 over the genres in a seeded order; see /__sim__/truth].",
    ),
    thin: list[str] | None = typer.Option(
        None,
        "--thin",
        help="Make this genre thin: only --thin-artists artists, so a harvest cannot fill it (repeatable; genre names as in the taxonomy, any case).",
    ),
    thin_artists: int | None = typer.Option(
        None, "--thin-artists", min=1, help="Artists in each --thin genre [default 12]."
    ),
    reissues: float | None = typer.Option(
        None,
        "--reissues",
        min=0.0,
        max=0.9,
        help="Share of findable covers (0-1) that are reissues: another release group's cover of the same genre re-encoded at another quality, size or with a border [default 0: only the default 5 % duplicates, half of them the same artist's].",
    ),
    artists: int | None = typer.Option(
        None,
        "--artists",
        min=100,
        help="Artists in the world [default 3000: enough for fetch --per-genre 40]; about 12000 hold --per-genre 150 at 50 % art coverage.",
    ),
    realistic: bool = typer.Option(
        False,
        "--realistic",
        help="Real-world timing: MusicBrainz answers in 200-800 ms, each CAA 307 and archive.org 302 in 100-400 ms, images at 2 MB/s per connection, at most 48 at once (429/503 beyond), 0.2 % resets and 0.1 % stalls.",
    ),
    log_requests: bool = typer.Option(
        True, "--log/--no-log", help="Keep the request log served at /__sim__/log (off for very long runs)."
    ),
    render_processes: int = typer.Option(
        0,
        "--render-processes",
        min=0,
        help="Processes that draw covers (Linux): one process draws about 100-300 covers/s [default 0: threads].",
    ),
    rate_limit: int | None = typer.Option(
        None,
        "--rate-limit",
        min=0,
        help="MusicBrainz requests per client per second before 503s [default 1, as the real service; 0 = none, for fetch --mb-interval 0].",
    ),
    write_dump: Path | None = typer.Option(
        None,
        "--write-dump",
        help="Write the world as a MusicBrainz JSON dump to this file and exit instead of serving: a name ending in .tar.xz gets release-group.tar.xz's layout (mbdump/release-group), any other the plain lines.",
    ),
) -> None:
    """Serve the MusicBrainz ws/2 + Cover Art Archive simulator over a seeded synthetic world (Ctrl-C stops).

    Tags come from MusicBrainz's genre vocabulary (thin votes, spelling variants, non-genre tags) and
    tag search is tokenized as on the real service (tag:"metal" also finds "death metal").
    """
    from equigen.simulator import serve_forever, write_world_dump

    if write_dump is not None:
        lines = write_world_dump(
            write_dump,
            seed=seed,
            thin_genres=tuple(thin) if thin else None,
            thin_artists=thin_artists,
            n_artists=artists,
            reissue_fraction=reissues,
            art_coverage=art_coverage,
        )
        out.print(f"wrote {lines} release groups (seed {seed}) to {write_dump}", highlight=False)
        return
    serve_forever(
        port=port,
        seed=seed,
        host=host,
        cover_px=cover_px,
        art_coverage=art_coverage,
        thin_genres=tuple(thin) if thin else None,
        thin_artists=thin_artists,
        n_artists=artists,
        reissue_fraction=reissues,
        realistic=realistic,
        log_requests=log_requests,
        render_processes=render_processes,
        rate_limit=rate_limit,
    )


def _catalog_error(exc: BaseException) -> None:
    detail = str(exc).strip().splitlines()[-1].rsplit(": ", 1)[-1] if str(exc).strip() else type(exc).__name__
    console.print(
        f"[bold red]error:[/] the catalog cannot be read or written ({inert(detail[:200])}): check free "
        "disk space; a damaged catalog.sqlite can be set aside and rebuilt with `equigen fetch`",
        highlight=False,
        soft_wrap=True,
    )
    sys.exit(EXIT_USER_ERROR)


def _click_errors() -> tuple[type[Exception], ...]:
    """ClickException as typer raises it: click's own, or the copy newer typer versions vendor."""
    found = []
    for module in ("click.exceptions", "typer._click.exceptions"):
        try:
            found.append(__import__(module, fromlist=["ClickException"]).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(found)


def main() -> None:
    """The `equigen` command: one verb, its errors as one line and an exit code."""
    try:
        _main()
    finally:
        # The command is done, whatever its exit: the interpreter's last collections need not trace every object
        # the verb's libraries made (pandas, SciPy, torch). A process that imported the pipeline's verbs exits in
        # 1.5-2.0 s instead of 2.2-2.5 s. Every file and the catalog are closed by then; only exit is left.
        gc.freeze()


def _main() -> None:
    try:
        # Not standalone: click would turn Ctrl-C into its own "Aborted!" before our line could be printed.
        code = app(standalone_mode=False)
    except typer.Exit as exc:  # typer turns Ctrl-C into Exit(130), so that code means interrupted
        code = exc.exit_code
    except _click_errors() as exc:  # usage errors: click's own message, exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except EquigenError as exc:
        console.print(f"[bold red]error:[/] {inert(exc)}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except (KeyboardInterrupt, typer.Abort):
        console.print("interrupted: the catalog is consistent; re-run the same command to resume")
        sys.exit(EXIT_INTERRUPTED)
    except sqlite3.DatabaseError as exc:  # a damaged catalog, or a disk that filled up under SQLite
        _catalog_error(exc)
    except OSError as exc:  # disk full, permissions, a folder removed under us: what was stored stays stored
        if type(exc).__module__.startswith("pandas"):  # pandas wraps SQLite's errors in an OSError subclass
            _catalog_error(exc)
        where = f" ({inert(exc.filename)})" if getattr(exc, "filename", None) else ""
        console.print(
            f"[bold red]error:[/] {inert(exc.strerror or exc)}{where}: free space or fix the folder, then "
            "re-run the same command (it resumes)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(EXIT_USER_ERROR)
    if code == EXIT_INTERRUPTED:
        console.print("interrupted: the catalog is consistent; re-run the same command to resume")
    if isinstance(code, int) and code:  # `verify` found problems (1); --help and success return 0 or None
        sys.exit(code)


if __name__ == "__main__":
    main()
