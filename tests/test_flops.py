"""FLOPs from the jaxpr (tljax/flops.py), against hand counts and brute-force tap counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax
from jax.sharding import AbstractMesh
from jax.sharding import PartitionSpec as P

from tljax.flops import FlopCount, conv_flops, count_flops, flop_count, jaxpr_flops

F32 = jnp.float32
NHWC = ("NHWC", "HWIO", "NHWC")


def spec(*shape, dtype=F32):
    return jax.ShapeDtypeStruct(shape, dtype)


def model_flops(make, x_shape, key=None):
    """FLOPs of a model's forward pass, from shapes only (nnx.eval_shape: no init)."""
    graph, state = nnx.split(nnx.eval_shape(make))

    def fwd(state, x):
        out = nnx.merge(graph, state)(x)
        return out[key] if key else out

    return flop_count(fwd, state, spec(*x_shape))


def resnet50_macs(size: int = 224, classes: int = 1000) -> int:
    """Multiply-adds of torchvision's ResNet-50 (v1.5) forward pass, layer by layer."""

    def conv(h, cin, cout, k, s):  # PyTorch padding k // 2
        out = (h + 2 * (k // 2) - k) // s + 1
        return out, out * out * cout * k * k * cin

    h, macs = conv(size, 3, 64, 7, 2)
    h = (h + 2 - 3) // 2 + 1  # 3x3 stride-2 max-pool, padding 1
    cin = 64
    for planes, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for j in range(blocks):
            s = stride if j == 0 else 1
            _, m1 = conv(h, cin, planes, 1, 1)
            h2, m2 = conv(h, planes, planes, 3, s)  # v1.5: the stride is in the 3x3
            _, m3 = conv(h2, planes, 4 * planes, 1, 1)
            macs += m1 + m2 + m3
            if j == 0:  # projection shortcut
                macs += conv(h, cin, 4 * planes, 1, s)[1]
            h, cin = h2, 4 * planes
    return macs + cin * classes


def test_resnet50_forward_is_the_published_4_09_gmacs():
    from tljax.models.resnet import resnet50

    n = model_flops(
        lambda: resnet50((224, 224, 3), rngs=nnx.Rngs(0), num_classes=1000),
        (1, 224, 224, 3),
        "logits",
    )
    assert n.total == 2 * resnet50_macs() == 2 * 4_089_184_256
    assert n.dot == 2 * 2048 * 1000 and n.while_loops == 0
    # torchvision's model card: 4.09 GMACs (fvcore/ptflops convention, padding taps included)
    assert abs(n.total / (2 * 4.089e9) - 1) < 0.01


@pytest.mark.parametrize(
    "kwargs, size",
    [({}, 28), ({"channels": (20, 50), "fc_dim": 500}, 28), ({"padding": "SAME"}, 16)],
)
def test_lenet_forward_hand_count(kwargs, size):
    from tljax.models.lenet import lenet

    c1, c2 = kwargs.get("channels", (32, 48))
    valid = kwargs.get("padding", "VALID") == "VALID"
    h1 = size - 4 if valid else size  # conv1 5x5
    h2 = h1 // 2 - 4 if valid else h1 // 2  # pool 2, conv2 5x5
    flat = (h2 // 2) ** 2 * c2
    want = 2 * (h1 * h1 * c1 * 25 * 3 + h2 * h2 * c2 * 25 * c1 + flat * kwargs.get("fc_dim", 0))
    n = model_flops(lambda: lenet((size, size, 3), rngs=nnx.Rngs(0), **kwargs), (2, size, size, 3))
    assert n.total == 2 * want  # batch of 2
    if valid and not kwargs:  # the DANN paper's digits LeNet: 3.84 M multiply-adds per image
        assert want == 2 * (24 * 24 * 32 * 75 + 8 * 8 * 48 * 800) == 7_680_000


def test_lenet_train_step_counts_the_backward_convolutions():
    """Forward + the weight gradients of both convolutions + the input gradient of conv2
    (the image needs none), each backward convolution costing its forward one — although
    conv2 is 'VALID', so its input gradient is a full-padded 5x5 convolution producing
    12x12 positions from the 8x8 output gradient (its scatter count is the smaller)."""
    from tljax.models.lenet import lenet

    graph, params = nnx.split(nnx.eval_shape(lambda: lenet((28, 28, 3), rngs=nnx.Rngs(0))))

    def loss(params, x):
        return nnx.merge(graph, params)(x)["features"].sum()

    n = flop_count(jax.grad(loss), params, spec(4, 28, 28, 3))
    conv1 = 2 * 4 * 24 * 24 * 32 * 25 * 3
    conv2 = 2 * 4 * 8 * 8 * 48 * 25 * 32
    assert n.conv == 2 * conv1 + 3 * conv2 and n.dot == 0
    gather = 2 * 4 * 12 * 12 * 32 * 25 * 48  # what the input gradient's gather count would be
    assert gather == 2.25 * conv2


def test_dot_general_with_batch_dims():
    lhs, rhs = spec(3, 4, 5), spec(3, 5, 6)
    dims = (((2,), (1,)), ((0,), (0,)))
    assert count_flops(lambda a, b: lax.dot_general(a, b, dims), lhs, rhs) == 2 * 3 * 4 * 6 * 5
    # two batch and two contracting dims: 2 * (2*3) * 7 * 11 * (4*5)
    f = lambda a, b: jnp.einsum("abijk,abjkl->abil", a, b)  # noqa: E731
    assert count_flops(f, spec(2, 3, 7, 4, 5), spec(2, 3, 4, 5, 11)) == 2 * 6 * 7 * 11 * 20
    assert count_flops(lambda a, b: a @ b, spec(8, 16), spec(16, 32)) == 2 * 8 * 16 * 32


def test_dense_layer_forward_plus_backward_is_exactly_3x():
    x, w = spec(32, 64), spec(64, 10)
    f = lambda x, w: jnp.tanh(x @ w).sum()  # noqa: E731
    fwd = count_flops(f, x, w)
    assert fwd == 2 * 32 * 64 * 10
    assert count_flops(jax.value_and_grad(f, argnums=(0, 1)), x, w) == 3 * fwd
    assert count_flops(jax.value_and_grad(f, argnums=1), x, w) == 2 * fwd  # no input grad


def brute_force_conv_flops(lhs_shape, rhs_shape, params) -> int:
    """An independent count. Per spatial dim, *gather*: from the materialised, dilated and
    padded input (0 = hole, 1 = element, 2 = padding), the (output, tap) pairs that do not
    read a hole; *scatter*: input elements x taps; the smaller of the two. Times output
    batch x output features x kernel input features x 2."""
    lhs_spec, rhs_spec, out_spec = params["dimension_numbers"]
    taps = 1
    for i in range(len(lhs_spec) - 2):
        length, k = lhs_shape[lhs_spec[2 + i]], rhs_shape[rhs_spec[2 + i]]
        s, r, d = (params[p][i] for p in ("window_strides", "rhs_dilation", "lhs_dilation"))
        lo, hi = params["padding"][i]
        line = np.zeros((length - 1) * d + 1, int)
        line[::d] = 1
        line = np.concatenate([[2] * max(lo, 0), line, [2] * max(hi, 0)])
        line = line[max(-lo, 0) : len(line) - max(-hi, 0)]
        out_len = (len(line) - (k - 1) * r - 1) // s + 1
        gather = sum(line[o * s + t * r] != 0 for o in range(out_len) for t in range(k))
        taps *= min(gather, length * k)
    batch = lhs_shape[lhs_spec[0]] // params["batch_group_count"]
    return 2 * batch * rhs_shape[rhs_spec[0]] * taps * rhs_shape[rhs_spec[1]]


def conv_eqns(fn, *args):
    eqns = jax.make_jaxpr(fn)(*args).jaxpr.eqns
    return [e for e in eqns if e.primitive.name == "conv_general_dilated"]


def check_each_conv_by_brute_force(fn, *args):
    eqns = conv_eqns(fn, *args)
    assert eqns
    for e in eqns:
        lhs, rhs = (v.aval.shape for v in e.invars)
        got = conv_flops(lhs, rhs, e.outvars[0].aval.shape, e.params)
        assert got == brute_force_conv_flops(lhs, rhs, e.params), e.params


def conv(x, w, stride=1, padding="SAME", groups=1, rhs_dilation=1):
    return lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        padding,
        rhs_dilation=(rhs_dilation, rhs_dilation),
        dimension_numbers=NHWC,
        feature_group_count=groups,
    )


@pytest.mark.parametrize(
    "c_in, c_out, groups", [(8, 16, 1), (8, 12, 2), (8, 8, 8), (8, 16, 8)], ids=str
)
def test_grouped_and_depthwise_conv(c_in, c_out, groups):
    x, w = spec(2, 9, 9, c_in), spec(3, 3, c_in // groups, c_out)
    f = lambda x, w: conv(x, w, groups=groups)  # noqa: E731
    fwd = count_flops(f, x, w)
    assert fwd == 2 * (2 * 9 * 9 * c_out) * 9 * (c_in // groups)
    # the weight gradient of a grouped conv is a batch_group_count conv: costs the forward
    g = jax.grad(lambda x, w: f(x, w).sum(), argnums=(0, 1))
    assert count_flops(g, x, w) == 3 * fwd  # fwd + input grad + weight grad ('SAME', stride 1)
    assert any(e.params["batch_group_count"] > 1 for e in conv_eqns(g, x, w)) == (groups > 1)
    check_each_conv_by_brute_force(g, x, w)


def test_strided_and_dilated_conv():
    x, w = spec(2, 17, 17, 4), spec(3, 3, 4, 6)
    # stride 2, padding 1: 9x9 outputs
    assert count_flops(lambda x, w: conv(x, w, 2, ((1, 1), (1, 1))), x, w) == 2 * 2 * 81 * 6 * 9 * 4
    # atrous (rhs dilation 2), 'VALID': 13x13 outputs, still 9 taps each
    n = count_flops(lambda x, w: conv(x, w, 1, "VALID", rhs_dilation=2), x, w)
    assert n == 2 * 2 * 13 * 13 * 6 * 9 * 4
    # a transposed conv (lhs dilation) in a model: input elements x taps (PyTorch's count
    # for ConvTranspose), not the 34x34 outputs x 9 taps that would include the holes
    for pad in ("SAME", "VALID"):
        t = lambda x, w, pad=pad: lax.conv_transpose(x, w, (2, 2), pad, dimension_numbers=NHWC)  # noqa: E731
        check_each_conv_by_brute_force(t, x, w)
        assert count_flops(t, x, w) == 2 * 2 * 17 * 17 * 9 * 4 * 6


@pytest.mark.parametrize(
    "stride, padding, dilation",
    [
        (1, "SAME", 1),
        (1, "VALID", 1),
        (2, ((1, 1), (1, 1)), 1),
        (2, "SAME", 1),
        (2, "VALID", 1),
        (3, ((2, 0), (0, 1)), 1),
        (1, "SAME", 2),
        (2, "VALID", 2),
    ],
)
def test_conv_backward_is_exactly_2x_forward(stride, padding, dilation):
    x, w = spec(4, 28, 28, 16), spec(3, 3, 16, 32)
    f = lambda x, w: conv(x, w, stride, padding, rhs_dilation=dilation).sum()  # noqa: E731
    fwd = count_flops(f, x, w)
    assert count_flops(jax.grad(f, argnums=1), x, w) == 2 * fwd  # + weight gradient
    assert count_flops(jax.grad(f, argnums=0), x, w) == 2 * fwd  # + input gradient
    assert count_flops(jax.grad(f, argnums=(0, 1)), x, w) == 3 * fwd
    eqns = conv_eqns(jax.grad(f, argnums=(0, 1)), x, w)
    assert any(max(e.params["lhs_dilation"]) > 1 for e in eqns) == (stride > 1)
    check_each_conv_by_brute_force(jax.grad(f, argnums=(0, 1)), x, w)


def test_control_flow_and_call_primitives():
    x = spec(8, 16)
    w = spec(16, 16)
    one = 2 * 8 * 16 * 16

    def body(c, _):
        return jnp.tanh(c @ w_val), None

    w_val = jnp.ones((16, 16))
    assert count_flops(lambda c: lax.scan(body, c, None, length=7)[0], x) == 7 * one
    # nested: scan of a scan
    inner = lambda c: lax.scan(body, c, None, length=3)[0]  # noqa: E731
    outer = lambda c: lax.scan(lambda c, _: (inner(c), None), c, None, length=5)[0]  # noqa: E731
    assert count_flops(outer, x) == 15 * one
    # cond: the most expensive branch
    n = flop_count(
        lambda p, c, w: lax.cond(p, lambda c: c @ w @ w, lambda c: c @ w, c), spec(dtype=bool), x, w
    )
    assert n.total == 2 * one and n.while_loops == 0
    # while: the body once, and says so
    loop = lambda c, w: lax.while_loop(lambda s: s[0] < 10, lambda s: (s[0] + 1, s[1] @ w), (0, c))
    n = flop_count(loop, x, w)
    assert n == FlopCount(dot=one, while_loops=1)
    # jit, checkpoint, custom_jvp, custom_vjp: counted once, like the plain function
    mm = lambda c, w: jnp.tanh(c @ w)  # noqa: E731

    def top(fn):  # the outermost primitive of fn's jaxpr: the call that is recursed into
        return jax.make_jaxpr(fn)(x, w).jaxpr.eqns[0].primitive.name

    relu = jax.custom_jvp(lambda c, w: jax.nn.relu(c @ w))
    relu.defjvp(lambda p, t: (relu(*p), t[0] @ p[1] + p[0] @ t[1]))
    for fn in (jax.jit(mm), jax.checkpoint(mm), relu):
        assert top(fn) != "dot_general" and count_flops(fn, x, w) == one, top(fn)

    @jax.custom_vjp
    def f(c, w):
        return c @ w

    f.defvjp(lambda c, w: (c @ w, (c, w)), lambda r, g: (g @ r[1].T, r[0].T @ g))
    assert top(f) == "custom_vjp_call" and count_flops(f, x, w) == one
    assert count_flops(jax.grad(lambda c, w: f(c, w).sum(), argnums=(0, 1)), x, w) == 3 * one
    # remat in a grad: the recomputed forward is counted too
    g = jax.grad(lambda c, w: jax.checkpoint(mm)(c, w).sum(), argnums=(0, 1))
    assert count_flops(g, x, w) == 4 * one


def test_shard_map_counts_every_shard():
    mesh = AbstractMesh((4,), ("d",))  # no devices needed to trace
    f = jax.shard_map(lambda a, b: a @ b, mesh=mesh, in_specs=(P(), P()), out_specs=P())
    # replicated operands: each of the 4 shards computes the whole (8, 16) @ (16, 16)
    assert count_flops(f, spec(8, 16), spec(16, 16)) == 4 * 2 * 8 * 16 * 16


def test_jaxpr_flops_rejects_other_types():
    closed = jax.make_jaxpr(lambda a: a @ a)(spec(4, 4))
    assert jaxpr_flops(closed) == jaxpr_flops(closed.jaxpr) == FlopCount(dot=2 * 4**3)
    assert FlopCount(dot=2, conv=3).total == 5
    with pytest.raises(TypeError, match="got str"):
        jaxpr_flops("not a jaxpr")
    assert count_flops(lambda a: jnp.exp(a).sum(), spec(3)) == 0
