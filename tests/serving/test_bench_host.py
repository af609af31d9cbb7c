"""bench/host.py names the machine a benchmark ran on: the CPU, its cores and the instruction sets that decide
the engines' kernels."""
import os

from bench.host import describe_cpu

ZEN5 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 26
model\t\t: 2
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 avx512f avx512bw avx512_vnni avx512_bf16 avx_vnni

processor\t: 1
model name\t: another core, never read
"""


def test_the_cpu_its_cores_and_its_vector_instructions():
    assert describe_cpu(ZEN5, cores=2) == "AMD EPYC (family 26, model 2), 2 cores, AVX2 AVX-512 VNNI BF16, no AMX"
    avx2_only = ZEN5.replace(" avx512f avx512bw avx512_vnni avx512_bf16", "")
    assert describe_cpu(avx2_only, cores=2).endswith("2 cores, AVX2, no AVX-512")
    amx = ZEN5.replace("avx_vnni", "amx_bf16 amx_tile amx_int8")
    assert describe_cpu(amx, cores=2).endswith("AVX2 AVX-512 VNNI BF16 AMX")


def test_without_cpuinfo_it_still_names_the_cores():
    assert describe_cpu("", cores=3).endswith(", 3 cores")


def test_this_machine():
    line = describe_cpu()
    assert f", {os.cpu_count()} cores, " in line and "AVX" in line  # its features, or "no AVX2"
