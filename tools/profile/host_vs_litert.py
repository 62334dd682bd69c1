#!/usr/bin/env python3
"""mote vs LiteRT latency on this host, single thread, in one run.

  host_vs_litert.py [--mote PATH] [--rounds 5] [--runs 300] MODEL.tflite ...

Each model is compiled once with `mote convert --layout host-simd`; then, for each round, `mote
bench MODEL.mote --runs N --json` and `../shared/tools/peers/bench.py MODEL.tflite --json`
(LiteRT with num_threads=1) run one after the other, so both see the same machine load. Prints
the median over rounds of each side's median latency and their ratio (mote / LiteRT; below 1:
mote is faster). Use the Python that has ai_edge_litert (e.g. /tmp/mote-peers-venv/bin/python).

bench.py times LiteRT over ~20 ms windows (a window's mean includes any preemption), while `mote
bench` times each inference; on a loaded machine the two disagree. So LiteRT is also timed the
way mote is (column "LiteRT/inv": median of single `invoke()` calls, one thread, the same ramp
input, Python's call overhead included), and the ratio against it is printed too.
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, '..', '..', '..', 'shared', 'tools', 'peers', 'bench.py')


def litert_per_invoke(model, runs):
    """Median µs of single LiteRT invocations (one thread, bench.py's ramp input)."""
    import time
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter
    lit = Interpreter(model_path=model, num_threads=1)
    lit.allocate_tensors()
    d = lit.get_input_details()[0]
    n = int(np.prod(d['shape'])) * np.dtype(d['dtype']).itemsize
    ramp = (np.arange(n) * 7 % 256).astype(np.uint8).view(d['dtype']).reshape(d['shape'])
    lit.set_tensor(d['index'], ramp)
    for _ in range(20):
        lit.invoke()
    samples = []
    for _ in range(runs):
        t = time.perf_counter_ns()
        lit.invoke()
        samples.append((time.perf_counter_ns() - t) / 1e3)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('models', nargs='+')
    ap.add_argument('--mote', default='mote', help='the mote CLI (a release build)')
    ap.add_argument('--peers', default=os.environ.get('MOTE_PEERS_BENCH', PEERS), help="peers' bench.py")
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--runs', type=int, default=300, help='mote bench runs per round')
    ap.add_argument('--json', action='store_true')
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix='mote-ratio-')
    rows = []
    for model in a.models:
        name = os.path.splitext(os.path.basename(model))[0]
        mote_file = os.path.join(tmp, name + '.mote')
        subprocess.run([a.mote, 'convert', model, '-o', mote_file, '--layout', 'host-simd'],
                       check=True, capture_output=True)
        mote_us, lite_us, inv_us = [], [], []
        for _ in range(a.rounds):
            out = subprocess.run([a.mote, 'bench', mote_file, '--runs', str(a.runs), '--json'],
                                 check=True, capture_output=True, text=True).stdout
            mote_us.append(json.loads(out)['median_us'])
            out = subprocess.run([sys.executable, a.peers, model, '--json'],
                                 check=True, capture_output=True, text=True).stdout
            lite_us.append(json.loads(out.strip().splitlines()[-1])['litert_us'])
            inv_us.append(litert_per_invoke(model, a.runs))
        m, l, i = (statistics.median(v) for v in (mote_us, lite_us, inv_us))
        rows.append({'model': name, 'mote_us': m, 'litert_us': l, 'ratio': m / l,
                     'litert_invoke_us': i, 'ratio_invoke': m / i,
                     'mote_rounds': mote_us, 'litert_rounds': lite_us, 'litert_invoke_rounds': inv_us})
    if a.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"{'model':<24} {'mote µs':>9} {'LiteRT µs':>10} {'ratio':>6} {'LiteRT/inv µs':>14} {'ratio':>6}")
    for r in rows:
        print(f"{r['model']:<24} {r['mote_us']:>9.1f} {r['litert_us']:>10.1f} {r['ratio']:>6.2f}"
              f" {r['litert_invoke_us']:>14.1f} {r['ratio_invoke']:>6.2f}")


if __name__ == '__main__':
    main()
