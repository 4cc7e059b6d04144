"""The benchmarks: thin scripts (bench_*.py, run as `python -m benchmarks.<script>` from the repository
root) over the parts they share: the fill, the stores, the approaches and the report."""
