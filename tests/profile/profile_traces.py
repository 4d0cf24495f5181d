"""Hand-built Kineto traces; each docstring works out the breakdown by hand."""

from __future__ import annotations

from anyware.profile.synth import TraceBuilder

GEMM = "void gemm_kernel<float, 128>(float const*, float*)"
RELU = "void relu_kernel(float*)"
NCCL = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"
H2D = "Memcpy HtoD (Pageable -> Device)"


def device_trace(rank: int = 0, world_size: int = 1, *, extra_gemm: float = 0.0) -> TraceBuilder:
    """Two steps of a GPU rank (µs):

    step 1 (host window 0-100): gemm [10,40] s7, nccl [30,70] s20, relu [50,60] s7,
      memcpy [80,90] s7, Event Sync [100,105] s7 — launched at 5, 9, 8, 12, 13;
    step 2 (host window 200-300): gemm [210,230] s7 and [220,240] s8, nccl [250,260] s20 —
      launched at 205, 206, 207 (after the device went idle at 105: starved 105 µs).

    Whole run: span 250; compute |[10,40]∪[50,60]∪[210,240]| = 70; comm outside compute
    [40,50]+[60,70]+[250,260] = 30; memory 10; other 5; idle 135. Overlap: 20 of comm's 50.
    ``extra_gemm`` adds a gemm of that length at [262, 262+extra] launched in step 2.
    """
    b = TraceBuilder(rank=rank, world_size=world_size)
    b.step(1, 0, 100)
    b.step(2, 200, 100)
    mm = b.op("aten::mm", 4, 16)
    b.kernel(GEMM, 10, 30, stream=7, launch_ts=5, ext=mm)
    b.kernel(RELU, 50, 10, stream=7, launch_ts=8)
    b.kernel(NCCL, 30, 40, stream=20, launch_ts=9)
    b.kernel(H2D, 80, 10, stream=7, launch_ts=12, cat="gpu_memcpy")
    b.kernel("Event Sync", 100, 5, stream=7, launch_ts=13, cat="cuda_sync")
    b.kernel(GEMM, 210, 20, stream=7, launch_ts=205)
    b.kernel(GEMM, 220, 20, stream=8, launch_ts=206)
    b.kernel(NCCL, 250, 10, stream=20, launch_ts=207)
    if extra_gemm:
        b.kernel(GEMM, 262, extra_gemm, stream=7, launch_ts=208)
    b.memory(1, 1000)
    b.memory(2, 5000, reserved=8192)
    b.memory(3, 3000)
    return b


def host_trace(rank: int = 0) -> TraceBuilder:
    """One CPU-only step, window 0-100 (µs). Thread 1: aten::linear [10,50] ⊃ aten::addmm
    [15,45] ⊃ aten::copy_ [20,25]; aten::relu [60,70]. Thread 2: gloo:all_reduce [40,80].
    Python frames on thread 1: train.py(12): step [5,90] ⊃ nn.Module: Linear_0 [8,52].

    Self: linear 10 (compute), addmm 25 (compute), copy_ 5 (memory), relu 10, gloo 40 (comm).
    Compute ∪ = [10,20]∪[25,50]∪[60,70] = 45; comm outside compute [50,60]∪[70,80] = 20;
    memory 5; idle 100 − 70 = 30. Overlap: 20 of comm's 40 = 50%.
    """
    b = TraceBuilder(rank=rank)
    b.step(0, 0, 100)
    b.python("train.py(12): step", 5, 85)
    b.python("nn.Module: Linear_0", 8, 44)
    b.python("torch/nn/modules/linear.py(125): forward", 9, 42)
    b.op("aten::linear", 10, 40)
    b.op("aten::addmm", 15, 30)
    b.op("aten::copy_", 20, 5)
    b.op("aten::relu", 60, 10)
    b.op("gloo:all_reduce", 40, 40, tid=2)
    return b


def async_comm_trace(rank: int = 0) -> TraceBuilder:
    """One CPU-only step, window 0-100 (µs), with anyware.comm's spans.

    Main thread 1: aten::mm [10,40]; moe.all_to_all_wait [40,62] ⊃ aten::view_as [60.5,61.5];
    anyware.comm:allreduce (sync) [70,80] ⊃ aten::copy_ [72,74]. Worker thread 2:
    anyware.comm:alltoall async [20,60] ⊃ aten::copy_ [25,30].

    The copies inside collectives are communication, and so is the wait (and what runs in it).
    Compute [10,40] = 30; comm ∪ = [20,62]∪[70,80] = 52, outside compute [40,62]∪[70,80] = 32;
    memory 0; other 0; idle 100 − 62 = 38. Overlap: [20,40] = 20 of comm's 52 = 38.5%. Per
    collective (waits are not one): the async all-to-all 20 of 40 = 50%, the all-reduce 0%.
    Counting the wait as compute would make the overlap 40 of 50 = 80%.
    """
    b = TraceBuilder(rank=rank)
    b.step(0, 0, 100)
    b.op("aten::mm", 10, 30)
    b.annotation("moe.all_to_all_wait", 40, 22)
    b.op("aten::view_as", 60.5, 1)
    b.annotation("anyware.comm:allreduce", 70, 10)
    b.op("aten::copy_", 72, 2)
    b.annotation("anyware.comm:alltoall async", 20, 40, tid=2)
    b.op("aten::copy_", 25, 5, tid=2)
    return b
