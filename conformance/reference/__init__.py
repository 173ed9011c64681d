"""Reference runs: a target serving SmolLM2-135M-Instruct compared with the reference model's own answers.

- corpus.py: the conversations and the greedy request bodies;
- oracle.py: the oracle, a chatconform mock over HTTP (never imported) or a reference file;
- plan.py: every request of a run, derived from the corpus and the oracle's answers alone;
- answers.py: a chat completion reduced to what the comparisons read;
- tolerance.py: how far the target may lie from the oracle, by the weights it runs, and why;
- compare.py: the greedy walk (near-ties, chosen logprobs, top-k sets);
- sampling.py: seeded sampling judged by the top-p set after temperature;
- run.py and judge.py: one run and the judgement of each clause (conformance/checks/test_reference.py);
- export.py: `chatconform reference export DIR` and the `check --reference*` options.
"""
