"""Nested dataclass configs: YAML file -> dataclasses, dotted command-line overrides, resolved copy.

Every default lives here, with the paper's value where the paper gives one; a departure from the
paper is a named field whose comment says so. An unknown key anywhere is a :class:`UserError` that
suggests the nearest valid key.
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssl_ctx.errors import UserError, suggest
from ssl_ctx.files import write_text_atomic


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1's safe loader, except that ``2e-4`` and ``1E5`` are floats (YAML 1.1 wants ``2.0e-4``), as in
    YAML 1.2 and every user's expectation."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                    |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)
                    |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    """``yaml.safe_load`` with YAML 1.2's floats (``2e-4`` is 0.0002, not a string)."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


@dataclass
class DataConfig:
    """Which prepared dataset to read, and how batches are made from it."""

    dataset: str = "tiny-imagenet-200"
    train_split: str = "train"
    eval_split: str = "val"
    # Cache resolution (height, width); null = the dataset's default (64 for Tiny-ImageNet, 32 for CIFAR-10 ...),
    # except an imagefolder:, whose photos have no size of their own: null = the network's input size
    # (data.input_size, else the encoder's), so that a run trains and probes at the size it was built for.
    cache_size: list[int] | None = None
    # Images per split taken from the cache (null = all): small slices for quick runs and tests.
    limit: int | None = None
    eval_limit: int | None = None
    # Size the network sees; null = the cache size. Crops are random for training, central for evaluation.
    input_size: int | None = None
    # Train-time augmentation, done on the batch's device: random crop of this fraction of the short side
    # (1.0 = whole image), then resize to input_size, then horizontal flip.
    crop_scale: float = 1.0
    hflip: bool = True
    # How an image becomes the cache's H x W (`ssl-ctx data prepare --resize`); null = the dataset's default:
    #   shorter_side  scaled so that its shorter side fits, then the centre kept (the paper's: the released code
    #                 rescales the short side, then crops): the default for photos of any shape (imagefolder:,
    #                 imagenet:)
    #   squeeze       the whole image stretched to H x W (aspect lost, nothing cropped): the default where label
    #                 maps or boxes cover the whole image (camvid, cmp-facade, voc:) and for the square images of
    #                 tiny-imagenet-200 and cifar10 (there every policy gives the same pixels)
    #   center_crop   the centre H x W at the image's own scale (scaled up only where it is smaller)
    resize: str | None = None
    # A dataset with a single split ('all': an image folder without split folders) is split in two for a run:
    # this seeded fraction of its images is held out as 'val' (what "held-out" numbers are measured on) and the
    # rest is 'train'. data.train_split=all data.eval_split=all uses every image for both, and says so.
    holdout_fraction: float = 0.1
    holdout_seed: int = 0


@dataclass
class MaskConfig:
    """Dropped regions (``ssl_ctx.masks``). Defaults follow the released code (train_random.lua)."""

    type: str = "random_region"  # central | random_block | random_region | none
    # central: side of the square as a fraction of the image side (0.5 -> 1/4 of the area, the paper's).
    central_fraction: float = 0.5
    # random_block: squares of this side fraction are added while their union stays within block_max_area
    # (the paper: "smaller possibly overlapping masks, covering up to 1/4 of the image").
    block_fraction: float = 0.25
    block_max_area: float = 0.25
    # random_region: thresholded bicubic-upsampled uniform noise; resample until the area is in
    # [min_area, max_area] (the released train_random.lua's 20-30 %).
    noise_resolution: float = 0.06
    density: float = 0.25
    min_area: float = 0.20
    max_area: float = 0.30
    # One mask per sample (the paper does not say; PAPER.md lists one per batch as a pitfall). The released
    # code reuses one mask per batch: set false to copy that.
    per_sample: bool = True
    # Hole fill: dataset_mean (from the cache; the paper's "constant mean value") | imagenet_mean (the code's
    # literal RGB 117,104,123: Caffe's BGR mean with its channels permuted) | zero.
    fill: str = "dataset_mean"


@dataclass
class ModelConfig:
    """Encoder, bottleneck and decoder of a pretext model."""

    # Any name in `ssl-ctx list`, or timm:<model>. The paper's is alexnet227 on 227-px ImageNet; alexnet64 (the
    # default) is the same network for 64-px images such as Tiny-ImageNet's (a departure forced by the data).
    encoder: str = "alexnet64"
    # Keyword options of a timm:<model> encoder, passed to timm.create_model and kept in its build spec, e.g. a
    # ViT for 64-px images: {img_size: 64, patch_size: 8, depth: 6, out_indices: [0, 1, 2, 3, 4, 5],
    # dynamic_img_size: true} (every block a feature map; other input sizes interpolate the position embedding).
    encoder_options: dict[str, Any] = field(default_factory=dict)
    # AlexNet normalisation: lrn (CaffeNet, the paper's) | batch (departure: trains faster from scratch) | none
    norm: str = "lrn"
    # Channel multiplier of the AlexNet widths: 1.0 = CaffeNet's 96-256-384-384-256 (paper); < 1 is a departure
    # that the quick CPU configs take to fit their time budget.
    width: float = 1.0
    # AlexNet convolution groups on conv2, conv4 and conv5: 2 = CaffeNet's (the paper's network) | 1 = ungrouped.
    groups: int = 2
    bottleneck: str = "channelwise_fc"  # channelwise_fc (paper) | conv1x1 (ablation: no channel-wise FC)
    dropout: float = 0.5  # dropout on the channel-wise FC output (paper, Sec. 5.2: 0.5); 0 = none
    # Decoder widths and norm are not given in the paper; BatchNorm follows the released (DCGAN-style) code.
    decoder_widths: list[int] = field(default_factory=lambda: [256, 128, 64, 32])
    decoder_norm: str = "batch"  # batch (released code) | none
    discriminator_widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    # Paper's 128-px inpainting model (models/inpainting.py).
    bottleneck_dim: int = 4000
    overlap: int = 4  # overlapPred in the code (the paper says 7)
    overlap_weight: float = 10.0


@dataclass
class MethodConfig:
    """The pretext method and its loss."""

    name: str = "context_encoder"
    adversarial: bool = False  # feature learning used L2 only (paper); true = joint loss
    lambda_rec: float = 0.999
    lambda_adv: float = 0.001
    generator_lr_multiplier: float = 10.0  # the code's 10x generator lr when 0 < lambda_rec < 1
    # Reconstruction loss (context_encoder): weight of a context pixel relative to a hole pixel. 0 = the paper's
    # masked L2 (Eq. 1, hole only); 1 = the released train_random.lua as its README runs it (useOverlapPred=0:
    # plain MSE over every pixel); 10 = train_random.lua with useOverlapPred=1.
    context_weight: float = 0.0
    # Divide the weighted squared error by: hole = 3 x the hole's pixels (the paper's "normalized" L2) | image =
    # every value of the batch (the code's nn.MSECriterion).
    loss_normalisation: str = "hole"
    # What the discriminator sees as fake (joint loss): raw = the generator's whole output (the paper's Eq. 2 and
    # both released scripts) | pasted = the prediction pasted into the real context.
    discriminator_input: str = "raw"
    # Options of methods that declare them (PretextMethod.option_specs; `ssl-ctx list` shows each method's): an
    # unknown name or a value of another type is refused.
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | sgd
    # 2e-4 = the released code; the paper's feature learning used 1e-4 (random region) or 1e-3 (central).
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.5, 0.999])
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | cosine
    warmup_steps: int = 0
    fused: bool | None = None  # null = fused kernels where this torch has them (CUDA; CPU from torch 2.4)


@dataclass
class TrainConfig:
    """The one training loop (``ssl_ctx.engine.trainer``)."""

    epochs: int = 1
    # The run's length when set: exactly this many optimiser steps, over as many epochs as they take (epochs is then
    # not used); null = `epochs` whole epochs. A run prints its step count and what set it before it starts.
    max_steps: int | None = None
    batch_size: int = 64  # global batch; divided among processes under torchrun
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto: bf16 autocast on CUDA and on CPUs with native bf16 (AVX512-BF16 / AMX), fp32 elsewhere | fp32 | bf16
    precision: str = "auto"
    channels_last: bool | None = None  # null = on for CUDA and CPUs
    compile: bool = False  # torch.compile the model
    sync_batchnorm: bool = False  # under torchrun on GPUs: BatchNorm statistics over the global batch (SyncBatchNorm)
    log_every: int = 50  # steps between scalar logs (the only host-device syncs)
    image_every: int = 500  # steps between TensorBoard image grids
    checkpoint_every: int = 500  # steps between checkpoints (one is also written at each epoch end)
    eval_batches: int | None = 20  # held-out batches for the end-of-run evaluation (null = every held-out image)
    progress: bool = True


@dataclass
class ProbeConfig:
    """A downstream probe on a transferred encoder (``ssl_ctx.probes``)."""

    task: str = "classification"  # classification | multilabel_classification | localisation | detection | segmentation
    init: str = "random"  # random | random:<file> | timm:<name> (pretrained) | checkpoint, export or state dict
    # Feature map(s) read, joined by '+'. Classification: one probe per layer (conv1+...+conv5 is Split-Brain's
    # per-layer protocol); segmentation: one head over all of them (FCN skips); detection: one layer.
    layer: str = "conv5"
    mode: str = "linear"  # linear (frozen encoder) | finetune (all layers)
    # How the head is fitted. auto: ridge for a frozen encoder (classification, segmentation), else sgd.
    # ridge: a closed-form linear classifier on frozen features, at its optimum by construction
    # (ssl_ctx.probes.linear_models); sgd: the head (and the encoder when fine-tuning) trained by the shared
    # Trainer for train.epochs.
    solver: str = "auto"
    # BatchNorm statistics of every encoder before the probe (ssl_ctx.probes.batch_norm): recompute on
    # bn_images unmasked training images of the probe's dataset (the same treatment for every encoder) | keep.
    bn_statistics: str = "recompute"
    bn_images: int = 2048
    pooled_features: int = 9216  # classification: adaptive-average-pool each map to about this many values
    # Ridge penalties (on the covariance of standardised features) tried on a held-out part of train
    # (classification: a stratified holdout_fraction of the images; segmentation: of the images' pixels).
    # From 1e-4, the order of bf16's rounding of the features (its variance in standardised units: 2e-5 at conv1 to
    # 5e-4 at conv5): a smaller penalty regularises nothing the rounding has not, and picking among such penalties
    # picks among roundings, which differ from one CPU to another.
    ridge_alphas: list[float] = field(default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    holdout_fraction: float = 0.1
    # Seed of that held-out part. Fixed (not train.seed) so that every encoder and seed is read out alike; vary it
    # to measure how much the penalty choice alone moves a result on one encoder.
    holdout_seed: int = 0
    pixels_per_image: int = 256  # frozen segmentation: labelled pixels per training image the ridge is fitted on
    # Frozen multi-label classification (VOC07, probe.solver=svm): one linear SVM per class, its cost chosen among
    # svm_costs by svm_folds-fold cross-validation on the training split (VISSL's VOC07 benchmark and its costs).
    svm_costs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0,
                                                            1000.0])
    svm_folds: int = 3
    keep_checkpoint: bool = False  # keep a trained probe's checkpoint after its record is written
    # Keep the frozen features this probe extracted (features/ beside the checkpoint) for later probes to reuse;
    # false deletes them once the record is written (about 1.3 GB per encoder in the quick bench).
    keep_features: bool = True
    num_classes: int | None = None  # null = from the dataset
    detection_min_size: int = 128  # Faster R-CNN's internal resize (small: CPU budget)
    detection_score_threshold: float = 0.0


@dataclass
class InpaintConfig:
    """Inpainting evaluation (``ssl-ctx eval-inpaint``)."""

    masks: list[str] = field(default_factory=lambda: ["central", "random_block", "random_region"])
    baselines: list[str] = field(default_factory=lambda: ["mean_fill", "telea", "navier_stokes", "nearest_neighbour"])
    checkpoints: dict[str, str] = field(default_factory=dict)  # table row name -> checkpoint path
    image_size: int = 128
    num_images: int | None = None
    psnr_cap: float = 100.0  # PSNR of identical images is capped here (dB)


@dataclass
class BenchConfig:
    """A benchmark matrix: methods (each a pretext run) x probes x seeds (``ssl-ctx bench``)."""

    # The pretext config every method starts from (relative to the bench config's folder's parent, i.e. configs/).
    pretext_config: str = "pretext/quick.yaml"
    # Dotted overrides applied to every pretext run, then per method: {name: {dotted.key: value}}; a method's
    # `config: pretext/x.yaml` starts it from its own pretext config instead of pretext_config.
    pretext_overrides: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Dotted overrides applied to every probe run, then per probe:
    # {name: {config: probe/x.yaml, metric: top1, dotted.key: value ...}}: a probe config plus overrides.
    probe_overrides: dict[str, Any] = field(default_factory=dict)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    baseline: str = "random_init"  # the method the table's differences are taken from
    # Methods compared with another baseline than `baseline`, {method: its baseline}: a method on another
    # architecture against random weights of its own, e.g. {mae: random_init_vit}.
    baselines: dict[str, str] = field(default_factory=dict)
    # Further differences the table shows, as [method, other method] pairs: [[context_encoder, autoencoder]] is
    # the paper's central comparison (inpainting against plain reconstruction).
    comparisons: list[list[str]] = field(default_factory=list)
    # Cells run at once when `ssl-ctx bench` gets no --workers: null = one after another in the bench process; N =
    # N worker processes sharing the cores (each cores // N torch threads).
    workers: int | None = None
    # Keep each encoder's cached frozen features (features/ beside its checkpoint) after all its probes have run;
    # false deletes them then (about 1.3 GB per encoder in the quick bench).
    keep_features: bool = True


@dataclass
class Config:
    """Everything one command needs. A YAML file sets any subset; the rest keeps these defaults."""

    name: str = "run"
    output_dir: str = "runs"  # runs go to <output_dir>/<name>
    # Free-form labels copied into the run record (the bench sets method, probe and seed here).
    tags: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# ----------------------------------------------------------------------------------------- building


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (light: the YAML types we use)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except UserError as err:
                errors.append(str(err))
        raise UserError(errors[0] if errors else f"bad value {value!r} for {where}")
    if _is_dataclass_type(tp):
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}")
        return _from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise UserError(f"{where} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{where} must be true or false, got {value!r}")
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str) and value.strip().lower().lstrip("+-") in ("nan", "inf", "infinity"):
        return float(value)  # a float, though not one any setting takes: check_values says which are
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and value.is_integer():  # 1e5 steps
        return int(value)
    if tp is str and isinstance(value, str):
        return value
    raise UserError(f"{where} must be {getattr(tp, '__name__', tp)}, got {value!r}")


def _from_dict(cls: type, values: dict[str, Any], where: str = "") -> Any:
    types_by_name = _field_types(cls)
    kwargs = {}
    for key, value in values.items():
        dotted = f"{where}.{key}" if where else key
        if key not in types_by_name:
            raise UserError(
                f"unknown config key '{dotted}'{suggest(key, types_by_name)}; "
                f"valid keys{' under ' + where if where else ''}: {', '.join(types_by_name)}"
            )
        kwargs[key] = _coerce(value, types_by_name[key], dotted)
    return cls(**kwargs)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in ("methods", "probes"):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """``train.epochs=2`` -> (["train", "epochs"], 2). The value is parsed as YAML."""
    if "=" not in text:
        raise UserError(f"override '{text}' is not KEY=VALUE; write for example train.epochs=2")
    key, raw = text.split("=", 1)
    return key.strip().split("."), parse_yaml(raw) if raw.strip() else ""


def overrides_to_dict(overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Dotted overrides (``["a.b=1"]`` or ``{"a.b": 1}``) -> nested dict."""
    items = overrides.items() if isinstance(overrides, dict) else (
        (".".join(k), v) for k, v in map(parse_override, overrides)
    )
    nested: dict[str, Any] = {}
    for dotted, value in items:
        node = nested
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        # a mapping joins what the same key already holds (bench.pretext_overrides.data.dataset=... beside the
        # bench config's other pretext overrides) rather than replacing it
        node[leaf] = _merge(node[leaf], value) if isinstance(value, dict) and isinstance(node.get(leaf), dict) \
            else value
    return nested


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file '{path}' does not exist; pass a YAML file such as configs/pretext/quick.yaml")
    try:
        values = parse_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise UserError(f"config file '{path}' is not valid YAML: {str(err).splitlines()[0]}") from None
    if values is None:
        raise UserError(f"config file '{path}' is empty; start from a file in configs/ (an empty config would "
                        f"silently run every default)")
    if not isinstance(values, dict):
        raise UserError(f"config file '{path}' must hold a mapping at the top level")
    return values


def load_config(
    path: str | os.PathLike | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    base: dict[str, Any] | None = None,
) -> Config:
    """Defaults <- ``base`` <- YAML file <- dotted overrides, checked key by key."""
    values = dict(base or {})
    if path is not None:
        values = _merge(values, read_yaml(path))
    if overrides:
        values = _merge(values, overrides_to_dict(overrides))
    return check_values(_from_dict(Config, values))


# ------------------------------------------------------------------------------------ impossible values


# A rule: (check, the fix's words, the condition's symbols for a nan or infinite value).
def _at_least(low: float) -> tuple[Callable[[Any], bool], str, str]:
    return (lambda v: math.isfinite(v) and v >= low), f"at least {low:g}", f">= {low:g}"


def _between(low: float, high: float, low_open: bool = False,
             high_open: bool = False) -> tuple[Callable, str, str]:
    def check(v: float) -> bool:
        return (v > low if low_open else v >= low) and (v < high if high_open else v <= high)

    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    return check, f"a number in {interval}", f"in {interval}"


_POSITIVE = (lambda v: math.isfinite(v) and v > 0), "a positive number", "> 0"
_COUNT, _NON_NEGATIVE, _FRACTION = _at_least(1), _at_least(0), _between(0, 1, low_open=True)

# Values no run can use, refused when a config loads (one line each). Lists are checked item by item;
# null (where a field allows it) always passes.
VALUE_RULES: dict[str, tuple[Callable[[Any], bool], str, str]] = {
    "data.limit": _COUNT, "data.eval_limit": _COUNT, "data.input_size": _COUNT, "data.cache_size": _COUNT,
    "data.crop_scale": _FRACTION, "data.holdout_fraction": _between(0, 1, True, True),
    "mask.central_fraction": _between(0, 1, True, True), "mask.block_fraction": _FRACTION,
    "mask.block_max_area": _FRACTION, "mask.noise_resolution": _FRACTION, "mask.density": _between(0, 1, True, True),
    "mask.min_area": _between(0, 1), "mask.max_area": _FRACTION,
    "model.width": _POSITIVE, "model.groups": _COUNT, "model.dropout": _between(0, 1, high_open=True),
    "model.decoder_widths": _COUNT, "model.discriminator_widths": _COUNT, "model.bottleneck_dim": _COUNT,
    "model.overlap": _NON_NEGATIVE, "model.overlap_weight": _NON_NEGATIVE,
    "method.lambda_rec": _between(0, 1), "method.lambda_adv": _NON_NEGATIVE,
    "method.generator_lr_multiplier": _POSITIVE, "method.context_weight": _NON_NEGATIVE,
    "optim.lr": _POSITIVE, "optim.betas": _between(0, 1, high_open=True), "optim.momentum": _between(0, 1),
    "optim.weight_decay": _NON_NEGATIVE, "optim.warmup_steps": _NON_NEGATIVE,
    "train.epochs": _COUNT, "train.max_steps": _COUNT, "train.batch_size": _COUNT, "train.log_every": _COUNT,
    "train.image_every": _NON_NEGATIVE, "train.checkpoint_every": _COUNT, "train.eval_batches": _COUNT,
    "probe.bn_images": _COUNT, "probe.pooled_features": _COUNT, "probe.ridge_alphas": _POSITIVE,
    "probe.holdout_fraction": _between(0, 1, True, True), "probe.pixels_per_image": _COUNT,
    "probe.num_classes": _COUNT, "probe.detection_min_size": _COUNT,
    "inpaint.image_size": _COUNT, "inpaint.num_images": _COUNT, "inpaint.psnr_cap": _POSITIVE,
}


def check_values(config: Config) -> Config:
    """Refuse the first impossible value (``VALUE_RULES``) with one line naming the key, the value and the fix."""
    for dotted, (allowed, what, condition) in VALUE_RULES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(config, section), key)
        items = value if isinstance(value, list) else [value]
        if value is not None and (not items or not all(allowed(item) for item in items)):
            each = "each item " if isinstance(value, list) else ""
            # nan and inf are floats, just not numbers a run can use: say what the value must be
            why = f" ({each or 'it '}must be finite and {condition})" if _non_finite(items) else ""
            raise UserError(f"{dotted}={value!r} is impossible{why}; set {each}to {what} (in the config file or "
                            f"as an override {dotted}=...)")
    for section in dataclasses.fields(config):
        part = getattr(config, section.name)
        for item in dataclasses.fields(part) if dataclasses.is_dataclass(part) else ():
            value = getattr(part, item.name)
            if _non_finite(value if isinstance(value, list) else [value]):
                dotted = f"{section.name}.{item.name}"
                raise UserError(f"{dotted}={value!r} is impossible; set it to a finite number (in the config file "
                                f"or as an override {dotted}=...)")
    if config.mask.min_area > config.mask.max_area:
        raise UserError(f"mask.min_area={config.mask.min_area} is above mask.max_area={config.mask.max_area}; "
                        f"the random region's area range must be min <= max")
    return config


def _non_finite(items: list[Any]) -> bool:
    return any(isinstance(item, float) and not math.isfinite(item) for item in items)


def config_to_dict(config: Config) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically) so the run can be repeated exactly."""
    return write_text_atomic(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
