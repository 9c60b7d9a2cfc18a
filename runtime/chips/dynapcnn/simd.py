"""Eight-lane int32 vector steps for the kernel's innermost loops (numba intrinsics).

The kernel's state and weights hold ``LANES`` (8) contiguous channels per position. numba
keeps LLVM's SLP vectoriser off, so an 8-iteration loop is fully unrolled into scalar code,
and a loop with a run-time trip count this short never reaches the vector body. These
intrinsics emit the ``<8 x i32>`` operations directly (AVX2 does each in one instruction;
other targets split them), which made the per-event path about 2.5x faster (measured).

Arithmetic is exactly the kernel's scalar semantics: int32 wrap-around sums, saturation to
the 16-bit state range, comparison with the threshold, the floor. Offsets are in elements
and must leave 8 elements inside the array (the layout pads channels to a multiple of 8).

numba's on-disk cache of ``kernel`` does not notice edits here: after changing this file,
touch ``kernel.py`` (or delete its cache files in ``__pycache__``).
"""

from __future__ import annotations

from typing import Any

from llvmlite import ir
from numba import types
from numba.extending import intrinsic

LANES = 8
STATE_MAX = 2**15 - 1
STATE_MIN = -(2**15)

_I32 = ir.IntType(32)
_VEC = ir.VectorType(_I32, LANES)


def _lanes(context: Any, builder: Any, arrty: Any, arr: Any, offset: Any) -> Any:
    """Pointer to 8 int32 of ``arr`` starting at element ``offset``."""
    data = context.make_array(arrty)(context, builder, arr).data
    return builder.bitcast(builder.gep(data, [offset]), _VEC.as_pointer())


def _splat(builder: Any, x: Any) -> Any:
    one = builder.insert_element(ir.Constant(_VEC, ir.Undefined), builder.trunc(x, _I32), ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(_VEC, ir.Undefined), ir.Constant(_VEC, [0] * LANES))


def _saturate(builder: Any, v: Any) -> Any:
    lo, hi = ir.Constant(_VEC, [STATE_MIN] * LANES), ir.Constant(_VEC, [STATE_MAX] * LANES)
    v = builder.select(builder.icmp_signed("<", v, lo), lo, v)
    return builder.select(builder.icmp_signed(">", v, hi), hi, v)


def _floor_and_any(builder: Any, ptr: Any, v: Any, theta: Any, v_min: Any) -> Any:
    """Store max(v, v_min); return 1 (int64) if any lane of v >= theta, else 0."""
    crossed = builder.icmp_signed(">=", v, _splat(builder, theta))
    floor = _splat(builder, v_min)
    builder.store(builder.select(builder.icmp_signed("<", v, floor), floor, v), ptr, align=4)
    mask = builder.bitcast(crossed, ir.IntType(LANES))
    return builder.zext(builder.icmp_unsigned("!=", mask, ir.Constant(ir.IntType(LANES), 0)), ir.IntType(64))


@intrinsic
def _add8(typingctx: Any, V: Any, vb: Any, W: Any, wb: Any, m: Any) -> Any:
    """V[vb:vb+8] += m * W[wb:wb+8] (int32, wrapping)."""
    sig = types.void(V, vb, W, wb, m)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        vty, _, wty, _, _ = signature.args
        v_arr, v_off, w_arr, w_off, mult = args
        vp = _lanes(context, builder, vty, v_arr, v_off)
        w = builder.load(_lanes(context, builder, wty, w_arr, w_off), align=4)
        total = builder.add(builder.load(vp, align=4), builder.mul(w, _splat(builder, mult)))
        builder.store(total, vp, align=4)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _add_check8(typingctx: Any, V: Any, vb: Any, W: Any, wb: Any, m: Any, theta: Any, v_min: Any) -> Any:
    """v = saturate(V + m * W); V = max(v, v_min); return 1 if any v >= theta."""
    sig = types.int64(V, vb, W, wb, m, theta, v_min)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        vty, _, wty, _, _, _, _ = signature.args
        v_arr, v_off, w_arr, w_off, mult, th, vm = args
        vp = _lanes(context, builder, vty, v_arr, v_off)
        w = builder.load(_lanes(context, builder, wty, w_arr, w_off), align=4)
        total = builder.add(builder.load(vp, align=4), builder.mul(w, _splat(builder, mult)))
        return _floor_and_any(builder, vp, _saturate(builder, total), th, vm)

    return sig, codegen


@intrinsic
def _check8(typingctx: Any, V: Any, vb: Any, theta: Any, v_min: Any) -> Any:
    """v = saturate(V); V = max(v, v_min); return 1 if any v >= theta."""
    sig = types.int64(V, vb, theta, v_min)

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        vty, _, _, _ = signature.args
        v_arr, v_off, th, vm = args
        vp = _lanes(context, builder, vty, v_arr, v_off)
        return _floor_and_any(builder, vp, _saturate(builder, builder.load(vp, align=4)), th, vm)

    return sig, codegen


# Typed as Any: mypy would check calls against the typing-context signature above.
add8: Any = _add8
add_check8: Any = _add_check8
check8: Any = _check8
