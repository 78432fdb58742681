"""What every benchmark scenario shares: paths and keys (``base``), measured child processes
(``children``), the sandbox and its request log (``sandbox``), the tools compared
(``tools``), interleaved runs and their medians (``measure``), targets and the printed table
(``report``), the machine's facts (``machine``) and the benchmarks' own environments
(``envs``). The scenarios themselves live in ``benchmarks/scenarios/``.
"""
