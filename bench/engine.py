"""The decoding engines side by side: tokens per second and first-token latency at 1, 4 and 16 concurrent
rows, peak memory, and this machine's limits measured by the same script.

    .venv/bin/python bench/engine.py [--rows 1 4 16] [--new-tokens 40] [--engines torch-int8 openvino] [--repeat 3]
                                     [--candidates 1]

Engines: `openvino` (the serving default on CPU: OpenVINO GenAI's continuous batching, int8 weights,
computing in float32), `openvino-bf16` (the same computing in bfloat16, `INFERENCE_PRECISION=bf16`),
`torch-float32` (the torch engine, served on CUDA and for seq2seq models) and `torch-int8` (the baseline:
the torch engine with torch's dynamic int8 linear layers, the serving path until 2026-11-30; torch has
deprecated that API, so it lives here only). Every engine gets the same prompts (the offline profile's chat
model with the shipped adapter, the persona prompt, one message each) and generates exactly --new-tokens
tokens per row (end tokens are ignored), so their work is equal. With --candidates K the rows are the
candidates of requests, K each, with their request's prompt, as sample-and-rank samples them (an engine may
compute a request's prompt once for all of its candidates). Each configuration runs --repeat times,
interleaved; the table gives the median and the range, and each engine's ratio to the first one is taken
run by run. The limits: memory copy bandwidth (a 512 MiB copy) and the float32 matmul rate of torch
with the engines' thread count, on the CPU and, where the torch engines run on a GPU, on it too; from each
engine's device's bandwidth, the decode rate one stream could reach if each step only had to read the
weights once.
"""
import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sheldonsite.settings")
from bench.host import describe_cpu  # noqa: E402

MESSAGES = [
    "Hi Sheldon, how are you?", "Can you explain string theory simply?", "What do you think of Penny?",
    "Do you want to come to the movies tonight?", "Why do you always sit in that spot?",
    "Is it true you have an IQ of 187?", "What is your favourite train?", "Leonard says you are annoying.",
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--new-tokens", type=int, default=40)
    parser.add_argument("--engines", nargs="+", default=["torch-int8", "openvino"], choices=list(ENGINES))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=1,
                        help="rows per request: a request's candidates share its prompt (sample-and-rank)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads per engine (default: one per core, as a worker's INFERENCE_THREADS=0)")
    return parser.parse_args(argv)


def memory_bandwidth_gb_s(device):
    """Read and write bandwidth of a 512 MiB copy, best of 3: numpy's on a CPU (every record in docs/bench/ was
    taken so), torch's on a GPU."""
    import numpy as np
    import torch

    if device.type == "cuda":
        source = torch.ones(512 * 1024 * 1024 // 8, dtype=torch.float64, device=device)
        copy = torch.empty_like(source).copy_
    else:
        source = np.ones(512 * 1024 * 1024 // 8)
        target = np.empty_like(source)

        def copy(source):
            np.copyto(target, source)

    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        copy(source)
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * source.nbytes / best / 1e9  # read and write


def matmul_gflop_s(device):
    """float32 matmul rate on `device`: 1024 squared on a CPU, 8192 on a GPU (a small one would not fill it)."""
    import torch

    size = 8192 if device.type == "cuda" else 1024
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    a @ b
    _synchronize(device)
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        a @ b
        _synchronize(device)
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _synchronize(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def weights_bytes(generator):
    """Bytes a decode step reads: the export's weights file, or the torch model's parameters as stored
    (a dynamically quantised Linear's weight() unpacks it: one byte a value)."""
    if generator.engine == "openvino":
        from inference.loading import openvino_export

        return (openvino_export(generator.name, generator.adapter) / "openvino_model.bin").stat().st_size
    total = 0
    for module in generator.model.modules():
        if callable(getattr(module, "weight", None)):
            total += module.weight().numel()
        else:
            total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    return total


def torch_int8(model):
    """The baseline: per-channel dynamic int8 linear layers (torch.ao's deprecated API)."""
    import torch

    quantization = torch.ao.quantization
    per_channel = {torch.nn.Linear: quantization.per_channel_dynamic_qconfig}
    return quantization.quantize_dynamic(model, per_channel, dtype=torch.qint8)


# name -> (INFERENCE_ENGINE, INFERENCE_PRECISION, change to the loaded torch model)
ENGINES = {
    "openvino": ("openvino", "f32", None),
    "openvino-bf16": ("openvino", "bf16", None),
    "torch-int8": ("torch", "f32", torch_int8),
    "torch-float32": ("torch", "f32", None),
}


class Engine:
    """One engine serving the offline profile's generator, with prompts ready as text."""

    def __init__(self, name):
        from dataclasses import replace

        from django.conf import settings

        from inference.backends import backend_for
        from inference.loading import load_generator
        from inference.profiles import active_profile

        engine, precision, change = ENGINES[name]
        settings.INFERENCE_ENGINE, settings.INFERENCE_PRECISION = engine, precision
        profile = active_profile()
        generator = load_generator(profile.generator_model, profile.generator_adapter)
        if change is not None:
            generator = replace(generator, model=change(generator.model))
        self.name = name
        self.backend = backend_for(generator, 0)
        self.backend.eos_ids = set()  # every row runs to its token limit: equal work for every engine
        self.weights_bytes = weights_bytes(generator)
        self.device = "cpu" if generator.engine == "openvino" else next(generator.model.parameters()).device.type
        self.prompts = [self.backend.prompt([], message, None) for message in MESSAGES]

    def run(self, rows, new_tokens, candidates=1):
        """(tokens per second over all rows, seconds to the first token of each row, median); the rows are
        the candidates of requests, `candidates` each."""
        from inference.requests import RequestState, Sequence

        self.backend.max_new_tokens = new_tokens
        first = {}

        def on_step(sequences):
            for sequence in sequences:
                first.setdefault(id(sequence), time.perf_counter() - started)

        batch = self.backend.open_batch(on_step)
        started = time.perf_counter()
        requests = [RequestState([], MESSAGES[n % len(MESSAGES)]) for n in range(-(-rows // candidates))]
        rows_made = [Sequence(requests[n // candidates]) for n in range(rows)]
        batch.add([self.prompts[(n // candidates) % len(self.prompts)] for n in range(rows)], rows_made)
        while batch:
            batch.step()
        seconds = time.perf_counter() - started
        tokens = sum(len(row.token_ids) for row in rows_made)
        return tokens / seconds, statistics.median(first.values()) if first else float("nan")


def main(argv=None):
    args = parse_args(argv)
    import django

    django.setup()
    import torch
    from django.conf import settings

    from inference.loading import device

    torch.set_num_threads(args.threads)
    settings.INFERENCE_THREADS = args.threads
    print(f"Machine: {describe_cpu()}; torch {torch.__version__}, {args.threads} torch thread(s)", flush=True)
    # The limits of each device an engine runs on: OpenVINO on the CPU, the torch engines on a GPU where there is one.
    cpu, on = torch.device("cpu"), device()
    bandwidth = {"cpu": memory_bandwidth_gb_s(cpu)}
    print(f"Limits: memory copy {bandwidth['cpu']:.1f} GB/s, float32 matmul {matmul_gflop_s(cpu):.1f} GFLOP/s", flush=True)
    if on.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(on)}, the torch engines' device", flush=True)
        bandwidth["cuda"] = memory_bandwidth_gb_s(on)
        print(f"Limits on the GPU: memory copy {bandwidth['cuda']:.1f} GB/s, float32 matmul {matmul_gflop_s(on):.1f} "
              f"GFLOP/s", flush=True)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(on)  # the peak printed below is the engines', not the limits' buffers
    engines = [Engine(name) for name in args.engines]
    # Loading an OpenVINO generator leaves torch one thread (a worker's setting); the torch engines get --threads.
    torch.set_num_threads(args.threads)
    for engine in engines:
        engine.run(1, 4)  # warm-up: the persona's cache, the allocator
    results = {(engine.name, rows): [] for engine in engines for rows in args.rows}
    for _ in range(args.repeat):
        for rows in args.rows:
            for engine in engines:  # interleaved, so a noisy moment hits every engine alike
                results[(engine.name, rows)].append(engine.run(rows, args.new_tokens, args.candidates))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gpu_peak = f", GPU peak {torch.cuda.max_memory_allocated(on) / 2**20:,.0f} MiB" if on.type == "cuda" else ""
    print(f"\n{args.new_tokens} new tokens per row, {args.candidates} candidate(s) per request, {args.repeat} runs "
          f"each: median [min, max]; process peak memory {peak_mib:,.0f} MiB{gpu_peak} (all engines loaded)\n")
    print("| engine | rows | tokens/s, all rows | first token s | weights MB | one stream at the bandwidth limit, tokens/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for engine in engines:
        ceiling = bandwidth[engine.device] * 1e9 / engine.weights_bytes
        for rows in args.rows:
            rates = [rate for rate, _ in results[(engine.name, rows)]]
            firsts = [first for _, first in results[(engine.name, rows)]]
            print(f"| {engine.name} | {rows} | {statistics.median(rates):.1f} [{min(rates):.1f}, {max(rates):.1f}] "
                  f"| {statistics.median(firsts):.3f} | {engine.weights_bytes / 1e6:.0f} | {ceiling:.0f} |")
    baseline = engines[0].name
    for engine in engines[1:]:
        for rows in args.rows:
            ratios = [a[0] / b[0] for a, b in zip(results[(engine.name, rows)], results[(baseline, rows)])]
            print(f"{engine.name} / {baseline} at {rows} rows: {statistics.median(ratios):.2f}x "
                  f"[{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
