"""The lowering registry: spatial op → JPEG-domain module, with capability checks that give reasons.

One :class:`Lowering` per op holds all the converter knows of it: the functional forms that
``normalize_functions`` rewrites into its module (:func:`module_form`), ``check(module, geometry,
options) -> reason | None`` (``None`` = applicable), ``build(module, geometry, options, name) ->
nn.Module`` and its documentation. The converter looks every JPEG-domain ``call_module`` node up here
by the type of its module; README's supported-operations table is generated from :data:`LOWERINGS`,
:data:`ELEMENTWISE` and :data:`PIXEL_OPS` by :func:`support_table`.

A module matches a registered type only if it *is* that type or a subclass that keeps its behaviour
(:func:`keeps_behaviour`): a subclass that overrides ``forward`` (or another method the base class
defines) computes something else — weight standardisation, "same" padding, a fused activation — and
is traced into instead, so that what it adds is seen, never silently dropped.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx
import torch.nn.functional as F
from torch import nn

from jpegfx import models, ops
from jpegfx.meta import IMAGE
from jpegfx.transforms import BlockGeometry, MAX_FREQUENCIES


@dataclass(frozen=True)
class ConvertOptions:
    """How a model is lowered (see :func:`jpegfx.convert`)."""

    relu: str = "exact"
    frequencies: int = MAX_FREQUENCIES
    maxpool: str = "exact"
    lowering: str = "auto"
    map_budget: int = ops.DEFAULT_MAP_BUDGET
    dtype: torch.dtype = torch.float32
    elide_transforms: bool = True
    strict: bool = False  # refuse ops without a JPEG-domain lowering instead of running them on pixels
    self_check: bool = True  # compare the result with the spatial model on a random input before returning
    domains: str = "jpeg"  # "jpeg": lowered ops on coefficients; "pixels": every op on pixels but the approximate ones


@dataclass(frozen=True)
class Lowering:
    """Everything the converter knows about one op: the module type it lowers (the key of
    :data:`LOWERINGS`; ``spatial`` names it and its lowered subclasses), the functional forms
    (``functions``, ``Tensor`` ``methods``) that ``normalize_functions`` rewrites into that module with
    ``from_call`` (which returns ``None`` to leave a call it cannot express alone, e.g. a dynamic
    argument; ``check_support`` then reports it), the capability ``check`` (a reason, or ``None``), the
    ``build`` of the JPEG-domain module, and the ``doc`` of the README's table."""

    spatial: str
    jpeg: str
    doc: str
    check: Callable[[nn.Module, BlockGeometry, ConvertOptions], str | None]
    build: Callable[[nn.Module, BlockGeometry, ConvertOptions, str], nn.Module]
    ends_jpeg_domain: bool = False
    functions: tuple = ()
    methods: tuple[str, ...] = ()
    from_call: Callable[[fx.GraphModule, fx.Node, bool], nn.Module | None] | None = None

    def call_names(self) -> list[str]:
        """The functional forms: ``F.relu``, ``torch.relu``, ``Tensor.relu`` …"""
        return [*(_call_name(f) for f in self.functions), *(f"Tensor.{m}" for m in self.methods)]

    def names(self) -> str:
        """The module and every functional form, as the README's table lists them."""
        return " / ".join([self.spatial, *self.call_names()])


def _call_name(function) -> str:
    for prefix, namespace in (("F", F), ("torch", torch), ("operator", operator)):
        if getattr(namespace, function.__name__, None) is function:
            return f"{prefix}.{function.__name__}"
    return function.__name__


def _always(module: nn.Module, geometry: BlockGeometry, options: ConvertOptions) -> str | None:
    return None


def _check_conv(conv: nn.Conv2d, geometry: BlockGeometry, options: ConvertOptions) -> str | None:
    reasons = ops.conv.supported_lowerings(conv)
    if options.lowering == "fused" and reasons["fused"] is None:
        need = ops.fused_map_bytes(conv, geometry, conv.weight.element_size())
        if need > options.map_budget:
            reasons["fused"] = (f"the fused map needs {need / 2**20:.1f} MiB > map_budget "
                                f"{options.map_budget / 2**20:.1f} MiB (use lowering='auto' or 'factored')")
    if options.lowering == "auto":
        return None if any(r is None for r in reasons.values()) else "; ".join(dict.fromkeys(filter(None, reasons.values())))
    return reasons.get(options.lowering, f"unknown lowering {options.lowering!r}")


def _check_maxpool(pool: nn.MaxPool2d, geometry: BlockGeometry, options: ConvertOptions) -> str | None:
    return "return_indices=True is not supported" if pool.return_indices else None


def _check_dropout(module: nn.Module, geometry: BlockGeometry, options: ConvertOptions) -> str | None:
    if module.training and module.p > 0:
        return "dropout on JPEG coefficients is not dropout on pixels; convert in eval mode or move it after pooling"
    return None


def _build_conv(conv, geometry, options, name):
    return ops.JpegConv2d.from_spatial(conv, geometry, options.lowering, options.map_budget, name)


def _build_bn(bn, geometry, options, name):
    return ops.JpegBatchNorm2d.from_spatial(bn, geometry)


def _build_gn(gn, geometry, options, name):
    return ops.JpegGroupNorm.from_spatial(gn, geometry)


def _build_relu(relu, geometry, options, name):
    return ops.JpegReLU(geometry, options.relu, options.frequencies, dtype=options.dtype)


def _build_piecewise(module, geometry, options, name):
    return ops.JpegPiecewiseLinear.from_spatial(module, geometry, options.relu, options.frequencies, options.dtype)


def _build_maxpool(pool, geometry, options, name):
    frequencies = options.frequencies if options.maxpool != "exact" else MAX_FREQUENCIES
    return ops.JpegMaxPool2d.from_spatial(pool, geometry, options.maxpool, frequencies, options.dtype)


def _build_avgpool(pool, geometry, options, name):
    return ops.JpegAvgPool2d.from_spatial(pool, geometry)


def _build_adaptive(pool, geometry, options, name):
    return ops.JpegAdaptiveAvgPool2d.from_spatial(pool, geometry)


def _build_identity(module, geometry, options, name):
    return nn.Identity()


def _build_shortcut_a(module, geometry, options, name):
    return ops.JpegShortcutA(module.stride, module.pad_channels, geometry)


# --------------------------------------------------------------------------------------------
# Functional forms → modules (normalize_functions). Each returns the module computing exactly what
# the call computes, or None to leave the call as it is.
# --------------------------------------------------------------------------------------------
def _relu_call(gm, node, training):
    return nn.ReLU()


def _module_call(cls: type, signature: list[str], defaults: dict | None = None, refuse_true: tuple[str, ...] = ()):
    """A ``from_call`` for a function ``f(input, *signature)`` whose other arguments are ``cls``'s
    constructor arguments; ``inplace`` is dropped (functionalize_inplace made the call out of place), an
    argument of ``refuse_true`` that is true (e.g. ``return_indices``) has no module form."""

    def build(gm, node, training):
        values = {**(defaults or {}), **dict(zip(["input", *signature], node.args)), **node.kwargs}
        if values.keys() - {"input", *signature}:
            return None
        values.pop("input", None)
        values.pop("inplace", None)
        if any(values.pop(k, False) is not False for k in refuse_true):
            return None
        if any(isinstance(v, fx.Node) for v in values.values()):
            return None  # computed at run time: check_support reports the call
        try:
            return cls(**values)
        except TypeError:
            return None

    return build


def _constants(gm: fx.GraphModule, node: fx.Node, names: list[str], defaults: dict) -> dict | None:
    """The call's arguments by name, with ``get_attr`` nodes replaced by their tensors; ``None`` when
    an argument (other than the input) is computed at run time."""
    values = {**defaults, **dict(zip(names, node.args)), **node.kwargs}
    if values.keys() - set(names):
        return None
    out = {}
    for key, v in values.items():
        if isinstance(v, fx.Node) and key != "input":
            if v.op != "get_attr":
                return None
            v = gm.get_parameter(v.target) if v.target in dict(gm.named_parameters()) else gm.get_buffer(v.target)
        out[key] = v
    return out


def _as_parameter(t: torch.Tensor | None) -> nn.Parameter | None:
    return None if t is None else nn.Parameter(t.detach().clone(), requires_grad=t.requires_grad)


def _conv_call(gm, node, training):
    """``F.conv2d`` with constant weights, in eval mode (in train mode its weight must keep its gradient)."""
    if training:
        return None
    a = _constants(gm, node, ["input", "weight", "bias", "stride", "padding", "dilation", "groups"],
                   {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1})
    if a is None or not isinstance(a["weight"], torch.Tensor) or a["weight"].dim() != 4:
        return None
    w = a["weight"]
    conv = nn.Conv2d(w.shape[1] * a["groups"], w.shape[0], tuple(w.shape[-2:]), a["stride"], a["padding"],
                     a["dilation"], a["groups"], bias=a["bias"] is not None, device=w.device, dtype=w.dtype)
    conv.weight, conv.bias = _as_parameter(w), _as_parameter(a["bias"])
    return conv


def _bn_call(gm, node, training):
    """``F.batch_norm`` in its eval form (running statistics, ``training=False``) with constant tensors."""
    if training:
        return None
    a = _constants(gm, node, ["input", "running_mean", "running_var", "weight", "bias", "training", "momentum",
                              "eps"], {"weight": None, "bias": None, "training": False, "momentum": 0.1, "eps": 1e-5})
    if a is None or a["training"] is not False or a["running_mean"] is None or a["running_var"] is None:
        return None
    bn = nn.BatchNorm2d(a["running_mean"].numel(), a["eps"], affine=a["weight"] is not None,
                        device=a["running_mean"].device, dtype=a["running_mean"].dtype).eval()
    bn.running_mean.copy_(a["running_mean"])
    bn.running_var.copy_(a["running_var"])
    if a["weight"] is not None:
        bn.weight, bn.bias = _as_parameter(a["weight"]), _as_parameter(a["bias"])
    return bn if a["bias"] is not None or a["weight"] is None else None


def _gn_call(gm, node, training):
    """``F.group_norm`` with constant affine tensors, in eval mode."""
    if training:
        return None
    a = _constants(gm, node, ["input", "num_groups", "weight", "bias", "eps"], {"weight": None, "bias": None, "eps": 1e-5})
    if a is None or a["weight"] is None or a["bias"] is None or not isinstance(a["num_groups"], int):
        return None  # without weights the channel count is not known before shapes are
    gn = nn.GroupNorm(a["num_groups"], a["weight"].numel(), a["eps"], device=a["weight"].device, dtype=a["weight"].dtype)
    gn.weight, gn.bias = _as_parameter(a["weight"]), _as_parameter(a["bias"])
    return gn


LOWERINGS: dict[type, Lowering] = {
    nn.Conv2d: Lowering("nn.Conv2d", "JpegConv2d",
                        "exact: fused map Ξ (paper eq. 12–13), factored IDCT→conv→DCT, or pointwise (1×1); "
                        "the functions with constant weights, in eval mode",
                        _check_conv, _build_conv, functions=(F.conv2d,), from_call=_conv_call),
    nn.BatchNorm2d: Lowering("nn.BatchNorm2d", "JpegBatchNorm2d",
                             "exact, eval and train (DC mean, DCT mean-variance theorem); the function in its eval "
                             "form with constant tensors", _always, _build_bn,
                             functions=(F.batch_norm,), from_call=_bn_call),
    nn.GroupNorm: Lowering("nn.GroupNorm", "JpegGroupNorm",
                           "exact, eval and train (per-sample group statistics from DC and Parseval); the function "
                           "with constant weights, in eval mode", _always, _build_gn,
                           functions=(F.group_norm,), from_call=_gn_call),
    nn.ReLU: Lowering("nn.ReLU", "JpegReLU", "exact, ASM(k) or APX(k) (paper §4.2)", _always, _build_relu,
                      functions=(F.relu, torch.relu), methods=("relu",), from_call=_relu_call),
    nn.LeakyReLU: Lowering("nn.LeakyReLU", "JpegPiecewiseLinear",
                           "exact, ASM(k) or APX(k) like ReLU (the piece chosen on k frequencies)", _always,
                           _build_piecewise, functions=(F.leaky_relu,),
                           from_call=_module_call(nn.LeakyReLU, ["negative_slope", "inplace"], {"negative_slope": 0.01})),
    nn.Hardtanh: Lowering("nn.Hardtanh / nn.ReLU6", "JpegPiecewiseLinear",
                          "exact, ASM(k) or APX(k) like ReLU (the piece chosen on k frequencies)", _always,
                          _build_piecewise, functions=(F.hardtanh, F.relu6),
                          from_call=lambda gm, node, training: (
                              _module_call(nn.ReLU6, ["inplace"])(gm, node, training) if node.target is F.relu6 else
                              _module_call(nn.Hardtanh, ["min_val", "max_val", "inplace"],
                                           {"min_val": -1.0, "max_val": 1.0})(gm, node, training))),
    nn.MaxPool2d: Lowering("nn.MaxPool2d", "JpegMaxPool2d",
                           "exact, or ASM-style winner selection on k frequencies", _check_maxpool, _build_maxpool,
                           functions=(F.max_pool2d,),
                           from_call=_module_call(nn.MaxPool2d, ["kernel_size", "stride", "padding", "dilation",
                                                                 "ceil_mode", "return_indices"],
                                                  refuse_true=("return_indices",))),
    nn.AvgPool2d: Lowering("nn.AvgPool2d", "JpegAvgPool2d", "exact", _always, _build_avgpool,
                           functions=(F.avg_pool2d,),
                           from_call=_module_call(nn.AvgPool2d, ["kernel_size", "stride", "padding", "ceil_mode",
                                                                 "count_include_pad", "divisor_override"])),
    nn.AdaptiveAvgPool2d: Lowering("nn.AdaptiveAvgPool2d", "JpegAdaptiveAvgPool2d",
                                   "exact; 1×1 reads DC only; ends the JPEG domain", _always,
                                   _build_adaptive, ends_jpeg_domain=True, functions=(F.adaptive_avg_pool2d,),
                                   from_call=_module_call(nn.AdaptiveAvgPool2d, ["output_size"])),
    nn.Identity: Lowering("nn.Identity", "(removed)", "passthrough", _always, _build_identity),
    nn.Dropout: Lowering("nn.Dropout (eval)", "(removed)", "passthrough in eval mode", _check_dropout,
                         _build_identity),
    models.ShortcutA: Lowering("ShortcutA (CIFAR option A)", "JpegShortcutA",
                               "exact: pixel subsampling + zero channels", _always, _build_shortcut_a),
}
"""Lowerable module types. Functional forms are normalised to these modules before lookup."""

_CALLS: dict = {f: lw for lw in LOWERINGS.values() for f in lw.functions}
_METHODS: dict[str, Lowering] = {m: lw for lw in LOWERINGS.values() for m in lw.methods}


def module_form(gm: fx.GraphModule, node: fx.Node, training: bool) -> nn.Module | None:
    """The module computing exactly what the call ``node`` computes, when a :class:`Lowering` has its
    functional form and can express this call (constant arguments; functional layers in eval mode)."""
    if node.op == "call_function":
        lowering = _CALLS.get(node.target)
    elif node.op == "call_method":
        lowering = _METHODS.get(node.target)
    else:
        return None
    return None if lowering is None else lowering.from_call(gm, node, training)

ELEMENTWISE = {
    "add": "operator.add / torch.add / Tensor.add / += of two images: coefficient-wise (paper §4.4)",
    "mul / div by a channel constant": "x * g, x / g with g a number or (N, C, 1, 1) (e.g. a squeeze-excitation gate): "
                                       "scales every coefficient of the channel",
    "mean over (h, w)": "x.mean((2, 3), keepdim): a DC read (squeeze-excitation), ends the JPEG domain",
    "shape, size(d)": "the spatial shape, read off the JPEG-domain tensor",
}


HARMLESS_OVERRIDES = frozenset({"__init__", "__repr__", "extra_repr", "reset_parameters", "__setstate__"})
"""Methods a subclass may redefine and still compute what its registered base class computes."""


def keeps_behaviour(cls: type, base: type) -> bool:
    """Whether subclass ``cls`` of ``base`` computes what ``base`` does: no class between them
    redefines ``forward`` or any other method of ``base`` (``_conv_forward``, ``_check_input_dim``, …)."""
    between = cls.__mro__[:cls.__mro__.index(base)]
    return not any(name not in HARMLESS_OVERRIDES and callable(value) and hasattr(base, name)
                   and value is not getattr(base, name)
                   for klass in between for name, value in vars(klass).items())


APPROXIMATE_RELU = (nn.ReLU, nn.LeakyReLU, nn.Hardtanh)
"""Modules whose lowering follows ``relu``: with "asm" or "apx" they compute on k frequencies of the
coefficients, which only the JPEG domain has."""


def needs_coefficients(module: nn.Module, options: ConvertOptions) -> bool:
    """Whether ``module``'s lowering under ``options`` is an approximation computed on coefficients (ASM /
    APX ReLU-like activations, ASM max pooling): it must stay in the JPEG domain whatever the domains."""
    if isinstance(module, APPROXIMATE_RELU):
        return options.relu != "exact"
    if isinstance(module, nn.MaxPool2d):
        return options.maxpool != "exact"
    return False


def lookup(module: nn.Module) -> Lowering | None:
    """The lowering of ``module``'s registered type, or ``None`` (not registered, or a subclass that
    changes what the registered type computes)."""
    for cls in type(module).__mro__:
        if cls in LOWERINGS:
            return LOWERINGS[cls] if keeps_behaviour(type(module), cls) else None
    return None


@dataclass(frozen=True)
class PixelOp:
    """An op computed exactly on pixels — what it computes is not linear (or moves values across the
    plane), so pixels are where it is exact. It runs between an inverse and a forward block DCT, which
    ``elide_transforms`` cancels against pixel-computing neighbours. Unlike an unknown op (the
    fallback), it is part of the supported set and ``strict`` accepts it."""

    name: str
    doc: str
    modules: tuple[type, ...] = ()
    functions: tuple = ()
    methods: tuple[str, ...] = ()
    check: Callable[[fx.Node], bool] = lambda node: True


def _images(node: fx.Node) -> list[fx.Node]:
    return [a for a in node.all_input_nodes if a.meta.get(IMAGE, False)]


def _channel_dim(node: fx.Node, position: int) -> bool:
    dim = node.kwargs.get("dim", node.args[position] if len(node.args) > position else 0)
    return isinstance(dim, int) and dim % 4 == 1


def _all_images(node: fx.Node) -> bool:
    tensors = [a for a in node.all_input_nodes if "tensor_meta" in a.meta]
    return bool(tensors) and len(_images(node)) == len(tensors)


ACTIVATION_MODULES = (nn.SiLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Hardswish, nn.Hardsigmoid, nn.ELU, nn.SELU,
                      nn.CELU, nn.Mish, nn.Softplus, nn.PReLU, nn.Softsign, nn.Tanhshrink)
ACTIVATION_FUNCTIONS = (F.silu, F.gelu, torch.sigmoid, F.sigmoid, torch.tanh, F.tanh, F.hardswish, F.hardsigmoid,
                        F.elu, F.selu, F.celu, F.mish, F.softplus, torch.clamp, torch.clip, F.prelu, F.softsign)
ACTIVATION_METHODS = ("sigmoid", "tanh", "clamp", "clip")

PIXEL_OPS: tuple[PixelOp, ...] = (
    PixelOp("elementwise activations", "SiLU, GELU, sigmoid, tanh, hardswish, hardsigmoid, ELU, Mish, softplus, "
            "clamp, …: f of each pixel, exact on pixels",
            ACTIVATION_MODULES, ACTIVATION_FUNCTIONS, ACTIVATION_METHODS,
            lambda node: len(_images(node)) == 1),
    PixelOp("product / quotient of two images", "x * y, x / y of two images (the paper's harmonic mixing, eq. 17, "
            "computed as inverse DCT → product → DCT)", (), (operator.mul, torch.mul, operator.truediv, torch.div),
            ("mul", "div"), lambda node: len(_images(node)) == 2 and not node.kwargs),
    PixelOp("softmax over channels", "F.softmax / torch.softmax along dim 1 (split attention): per pixel",
            (nn.Softmax,), (F.softmax, torch.softmax), ("softmax",), lambda node: _channel_dim(node, 1)),
    PixelOp("channel concatenation and split", "torch.cat / split / chunk along the channel dim "
            "(Res2Net, CSP, ResNeSt)", (), (torch.cat, torch.concat, torch.split, torch.chunk),
            ("split", "chunk"), lambda node: _channel_dim(node, 1) and _all_images(node)),
    PixelOp("constant padding", "F.pad (constant mode), nn.ZeroPad2d, nn.ConstantPad2d ('same' padding, blur "
            "pools): moves pixels", (nn.ZeroPad2d, nn.ConstantPad2d), (F.pad,), (),
            lambda node: len(_images(node)) == 1 and node.kwargs.get("mode", "constant") == "constant"
            and (len(node.args) < 3 or node.args[2] == "constant")),
)


def pixel_op(node: fx.Node, module: nn.Module | None = None) -> PixelOp | None:
    """The :class:`PixelOp` that ``node`` (with its module, for ``call_module``) is, if any."""
    for op in PIXEL_OPS:
        matched = (node.op == "call_module" and type(module) in op.modules
                   or node.op == "call_function" and node.target in op.functions
                   or node.op == "call_method" and node.target in op.methods)
        if matched and op.check(node):
            return op
    return None


def support_table() -> str:
    """A markdown table of the supported operations, for README and ``jpegfx convert --help``."""
    rows = ["| spatial op | JPEG-domain op | notes |", "|---|---|---|"]
    rows += [f"| {lw.names()} | {lw.jpeg} | {lw.doc} |" for lw in LOWERINGS.values()]
    rows += [f"| {name} | (same) | {doc} |" for name, doc in ELEMENTWISE.items()]
    rows += [f"| {op.name} | (same, on pixels) | {op.doc} |" for op in PIXEL_OPS]
    rows.append("| anything after global pooling | (unchanged) | the head (flatten, Linear, …) is spatial-free |")
    rows.append("| any other op on images | (same op, on pixels) | exact: inverse block DCT, the op, forward DCT; "
                "listed by `convert`, refused with `strict=True` |")
    return "\n".join(rows)
