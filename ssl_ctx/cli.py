"""`ssl-ctx <verb>`: parses the command line and calls the package. Every verb has --help."""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from ssl_ctx.errors import Terminated, UserError, interrupt_status, plugin_failure

CONFIG_HELP = "YAML config file (see configs/); any key can be overridden after it as section.key=value"
OVERRIDES_HELP = "dotted overrides, e.g. train.epochs=2 data.limit=5000 name=my-run"
STOPPED_EARLY = 3  # exit status of a bench stopped by --stop-after (or with a failed cell): run it again


def _load(args: argparse.Namespace, shorthands: dict[str, str] | None = None):
    from ssl_ctx.config import load_config

    overrides = []
    for item in args.overrides:
        key = item.split("=", 1)[0]
        overrides.append(item.replace(key, shorthands[key], 1) if shorthands and key in shorthands else item)
    return load_config(args.config, overrides)


def cmd_data_prepare(args: argparse.Namespace) -> None:
    from ssl_ctx.data import prepare_command

    prepare_command(args.name, size=args.size, limit=args.limit, workers=args.workers,  # prepare checks the values
                    resize=args.resize)


def cmd_data_scenes(args: argparse.Namespace) -> None:
    from ssl_ctx.data.command import scenes_command

    scenes_command(args.target)


def cmd_pretrain(args: argparse.Namespace) -> None:
    from ssl_ctx.pretext.run import run_pretrain

    run_pretrain(_load(args), resume=args.resume, allow_changes=tuple(args.allow_change))


def cmd_probe(args: argparse.Namespace) -> None:
    from ssl_ctx.probes import run_probe

    run_probe(_load(args, {"init": "probe.init"}), resume=args.resume, allow_changes=tuple(args.allow_change))


def cmd_bench(args: argparse.Namespace) -> int:
    from ssl_ctx.bench.launchers import Launch
    from ssl_ctx.bench.runner import run_bench

    bench = _load(args)
    workers = args.workers or (str(bench.bench.workers) if bench.bench.workers and not args.launcher else None)
    launch = Launch(workers=workers, launcher=args.launcher, slurm_partition=args.slurm_partition,
                    slurm_gpus_per_job=args.slurm_gpus_per_job, slurm_cpus_per_job=args.slurm_cpus_per_job,
                    slurm_time_minutes=args.slurm_time_minutes, slurm_group=args.slurm_group)
    complete = run_bench(bench, config_path=args.config, overrides=args.overrides, stop_after=args.stop_after,
                         replace_changed=args.replace_changed, launch=launch)
    return 0 if complete else STOPPED_EARLY


def cmd_table(args: argparse.Namespace) -> None:
    from ssl_ctx.results.tables import table_command

    table_command(args.runs_dir, output=args.output, paper=args.paper, baseline=args.baseline or None,
                  overwrite=args.overwrite, comparisons=[_comparison(text) for text in args.compare],
                  baselines=dict(_comparison(text, "--baseline-of") for text in args.baseline_of))


def _comparison(text: str, option: str = "--compare") -> tuple[str, str]:
    """``--compare A:B`` (or ``--baseline-of A:B``) -> (A, B)."""
    method, _, other = text.partition(":")
    if not method or not other:
        raise UserError(f"{option} takes METHOD:OTHER (e.g. context_encoder:autoencoder), not '{text}'")
    return method, other


def cmd_export(args: argparse.Namespace) -> None:
    from ssl_ctx.export import export_encoder
    from ssl_ctx.probes.encoder_loading import describe_encoder, load_encoder_file

    output = export_encoder(args.checkpoint, args.output)
    encoder = load_encoder_file(output, None)  # read back: the file stands on its own
    print(f"wrote {output}: encoder {describe_encoder(encoder)}; probe it with probe.init={output}")


def cmd_list(args: argparse.Namespace) -> None:
    from ssl_ctx.pretext.declarations import describe_options
    from ssl_ctx.registry import ENCODERS, PRETEXT_METHODS, PROBES

    for title, registry in (("pretext methods", PRETEXT_METHODS), ("encoders", ENCODERS), ("probes", PROBES)):
        print(f"{title}: {', '.join(registry.names())}")
        for name in registry.names() if registry is PRETEXT_METHODS else ():
            lines = describe_options(registry.get(name).option_specs)  # none: the method takes no method.options
            if lines:
                print("\n".join([f"  {name}:", *(f"    {line}" for line in lines)]))
    print("encoders from timm: timm:<model name> (e.g. model.encoder=timm:resnet18; model.encoder_options passes "
          "timm.create_model's keywords, e.g. a ViT's {img_size: 64, patch_size: 8}; probe.init=timm:resnet18 reads "
          "timm's pretrained weights from the local cache, probe.init=random gives random ones)")


def cmd_eval_inpaint(args: argparse.Namespace) -> None:
    from ssl_ctx.inpaint.evaluate import run_eval_inpaint

    run_eval_inpaint(_load(args))


def cmd_inpaint(args: argparse.Namespace) -> None:
    from ssl_ctx.inpaint.predict import inpaint_command

    inpaint_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ssl-ctx",
        description="Context-encoder feature learning: pretext training, downstream probes, benchmark tables, "
                    "inpainting. Data are read from $SSL_CTX_DATA (default ./data); caches go to $SSL_CTX_CACHE "
                    "(default ./cache).")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler: Callable, help_text: str, with_config: bool = True) -> argparse.ArgumentParser:
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        if with_config:
            sub.add_argument("config", help=CONFIG_HELP)
            sub.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
        return sub

    data = verbs.add_parser("data", help="prepare dataset caches and image folders",
                            description="Prepare dataset caches and image folders.")
    data_verbs = data.add_subparsers(dest="data_verb", required=True, metavar="ACTION")
    prepare = data_verbs.add_parser(
        "prepare", help="read a dataset archive or folder and write its uint8 cache",
        description="Read a dataset from its archive (or extracted folder) in $SSL_CTX_DATA and write a "
                    "memory-mapped uint8 cache in $SSL_CTX_CACHE. Idempotent, and resumable: after an "
                    "interruption (even a kill) the same command continues where it stopped.")
    prepare.add_argument("name", help="tiny-imagenet-200 | cifar10 | camvid | cmp-facade | imagefolder:<path> | "
                                      "imagenet:<path> (ILSVRC-2012) | voc:<path> (e.g. VOCdevkit/VOC2007); a relative "
                                      "<path> is looked up in $SSL_CTX_DATA too")
    prepare.add_argument("--size", help="cache resolution HxW, or one side for a square (default: the dataset's own, e.g. 64x64)")
    prepare.add_argument("--limit", type=int, help="keep only N images per split (class-stratified)")
    prepare.add_argument("--resize", metavar="{shorter_side,squeeze,center_crop}",  # checked by the data layer
                         help="how an image becomes the cache's HxW: shorter_side scales it so that its shorter side "
                              "fits, then keeps the centre (aspect kept; the paper's); squeeze stretches the whole "
                              "image (aspect lost, nothing cut off); center_crop keeps the centre at the image's own "
                              "scale (scaled up only where smaller). Default: the dataset's (shorter_side for "
                              "photos: tiny-imagenet-200, cifar10, imagefolder:, imagenet:; squeeze where label "
                              "maps or boxes cover the whole image: camvid, cmp-facade, voc:); another policy is "
                              "cached in <H>x<W>-<policy>/")
    prepare.add_argument("--workers", type=int, metavar="N",
                         help="processes that decode and resize images (default: every core this process may use); "
                              "the cache is the same whatever N")
    prepare.set_defaults(handler=cmd_data_prepare)
    scenes = data_verbs.add_parser(
        "scenes", help="link CamVid street and CMP facade scenes into one image folder (train/ and test/)",
        description="Write TARGET/<split>/street/ (CamVid) and TARGET/<split>/facade/ (CMP facade) as symbolic "
                    "links to the published files, for training one model on both with "
                    "data.dataset=imagefolder:TARGET. Idempotent.")
    scenes.add_argument("target", metavar="TARGET", help="folder to create (for example $SSL_CTX_CACHE/street-facade)")
    scenes.set_defaults(handler=cmd_data_scenes)

    pretrain = verb("pretrain", cmd_pretrain, "train a pretext method (context encoder, autoencoder, ...)")
    probe = verb("probe", cmd_probe, "measure an encoder on a downstream task (init=random | random:<CKPT> | "
                                     "timm:<name> (timm's pretrained weights) | CKPT | an `ssl-ctx export` file | "
                                     "a state dict from torchvision, timm, Lightning, solo-learn or MoCo)")
    for sub in (pretrain, probe):
        sub.add_argument("--resume", action="store_true",
                         help="continue the run's last checkpoint (refused if a setting differs from it)")
        sub.add_argument("--allow-change", action="append", default=[], metavar="KEY",
                         help="with --resume: let this setting (e.g. optim.lr, or a section such as train) differ "
                              "from the checkpoint's; the record lists every change and the step it took effect. "
                              "Repeat for several keys")
    bench = verb("bench", cmd_bench, "run methods x probes x seeds from a bench config and print the comparison table")
    bench.add_argument("--stop-after", type=float, metavar="SECONDS",
                       help="stop after this long (a running training cell checkpoints first) and exit with status "
                            f"{STOPPED_EARLY}; the same command continues where it stopped")
    bench.add_argument("--replace-changed", action="store_true",
                       help="cells in the folder that were made with other settings (the bench refuses them "
                            "otherwise) are moved to <folder>.replaced-<time>/ with the probes that read them, "
                            "and recomputed")
    bench.add_argument("--workers", metavar="N|gpus",
                       help="run N cells at once, each in a worker process with cores/N torch threads (default: the "
                            "config's bench.workers, else 1: one after another in this process); 'gpus': one worker "
                            "per visible GPU. A probe waits for its pretext cell; each cell's output goes to "
                            "<folder>/logs/. With --launcher: "
                            "jobs at once (default: 1 for local, no limit for slurm)")
    bench.add_argument("--launcher", choices=("local", "slurm"),
                       help="run the cells as submitit jobs: 'slurm' on a SLURM cluster (from its login node), "
                            "'local' on this machine; submitit's logs go to <folder>/submitit/")
    bench.add_argument("--slurm-group", choices=("cell", "pretext"),
                       help="one job per cell (default), or per method and seed: its pretext cell then its probes "
                            "(also with --launcher local)")
    bench.add_argument("--slurm-partition", metavar="NAME", help="SLURM partition of the jobs")
    bench.add_argument("--slurm-gpus-per-job", type=int, metavar="N", help="GPUs of each SLURM job (default 0)")
    bench.add_argument("--slurm-cpus-per-job", type=int, metavar="N",
                       help="CPU cores of each SLURM job (default: the cluster's), also its torch threads")
    bench.add_argument("--slurm-time-minutes", type=int, metavar="MINUTES",
                       help="time limit of each SLURM job (default 240); a cell still training near the limit "
                            "checkpoints and the next run of the bench resumes it")

    table = verb("table", cmd_table, "make mean ± std tables, differences with confidence intervals and figures "
                                     "from run records", with_config=False)
    table.add_argument("runs_dir", help="folder holding run records (record.json files), e.g. runs/bench-quick")
    table.add_argument("-o", "--output", help="folder for the tables and figures (default: RUNS_DIR/tables)")
    table.add_argument("--paper", action="store_true", help="show the paper's published numbers beside ours")
    table.add_argument("--baseline", default="random_init",
                       help="method the differences (Δ, Welch's t-test) are taken from (default: random_init; "
                            "'' for none)")
    table.add_argument("--baseline-of", action="append", default=[], metavar="METHOD:BASELINE",
                       help="compare METHOD with BASELINE instead of --baseline (a method of another architecture "
                            "against random weights of its own, e.g. mae:random_init_vit); repeatable")
    table.add_argument("--compare", action="append", default=[], metavar="METHOD:OTHER",
                       help="also show METHOD's difference from OTHER (e.g. context_encoder:autoencoder); "
                            "repeatable")
    table.add_argument("--overwrite", action="store_true", help="replace tables already in the output folder")

    export = verb("export", cmd_export, "write a pretext checkpoint's encoder as a safetensors file with its build "
                                        "options and feature maps (probe.init takes it)", with_config=False)
    export.add_argument("checkpoint", help="checkpoint written by `ssl-ctx pretrain` (runs/<name>/checkpoints/last.pt)")
    export.add_argument("-o", "--output",
                        help="the .safetensors file (default: encoder.safetensors in the checkpoint's run folder)")

    verb("list", cmd_list, "list registered pretext methods, encoders and probes", with_config=False)
    verb("eval-inpaint", cmd_eval_inpaint, "inpainting table (mean L1, mean L2, PSNR) of models and baselines")

    inpaint = verb("inpaint", cmd_inpaint, "inpaint one image with a trained model", with_config=False)
    inpaint.add_argument("image", help="input image (any size)")
    region = inpaint.add_mutually_exclusive_group(required=True)
    region.add_argument("--mask", help="mask PNG of the image's size; white (non-zero) = pixels to fill")
    region.add_argument("--region", metavar="KIND",
                        help="a generated region to fill: center, block or random (the --region words of "
                             "ssl_ctx.masks.MASK_TYPES)")
    inpaint.add_argument("--checkpoint", required=True, help="checkpoint written by `ssl-ctx pretrain`")
    inpaint.add_argument("-o", "--output", required=True,
                         help="output image; .png (or .bmp, .tif, .webp: lossless) keeps the context pixels exactly, "
                              ".jpg changes them and says so")
    inpaint.add_argument("--figure", help="also write a side-by-side figure (input | masked | output) here")
    inpaint.add_argument("--overwrite", action="store_true",
                         help="replace an existing -o / --figure file (never the input image, mask or checkpoint)")
    inpaint.add_argument("--seed", type=int, default=0, help="seed of a generated region")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    finished = False
    try:
        status = args.handler(args) or 0
        finished = True
    except UserError as err:
        print(f"ssl-ctx: error: {err}", file=sys.stderr)
        if err.detail:
            print(f"  {err.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        terminated = isinstance(err, Terminated)
        # Verbs with --resume continue from their checkpoints; the others said what they keep themselves (a data
        # prepare continues with the same command).
        kept = "; checkpoints written so far are kept (continue with --resume)" if hasattr(args, "resume") else ""
        print(f"ssl-ctx: {'terminated (SIGTERM)' if terminated else 'interrupted'}{kept}", file=sys.stderr)
        return interrupt_status(err)
    except Exception as err:  # a plug-in's own error is one line too; a core bug keeps its traceback
        from ssl_ctx.registry import plugin_modules

        line = plugin_failure(err, plugin_modules())
        if line is None:
            raise
        print(f"ssl-ctx: error: {line}", file=sys.stderr)
        return 2
    finally:
        if "WORLD_SIZE" in os.environ:
            from ssl_ctx.engine.distributed import cleanup

            cleanup(finished)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
