"""Training step: f2tune against a plain transformers + peft loop, same batches, one run.

    OMP_NUM_THREADS=1 python benchmarks/train_step.py                  # tiny + base at 192x192 (minutes on a CPU)
    python benchmarks/train_step.py --sizes base --base-image-size 768 # the real Florence-2-base input size

The same as `f2tune bench`; the code lives in `f2tune.bench`. Results: benchmarks/README.md.
"""

import sys

from f2tune.bench.main import main

if __name__ == "__main__":
    sys.exit(main())
