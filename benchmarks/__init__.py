"""deid-workers benchmarks: ``python -m benchmarks [--quick] [--json PATH]``.

Every figure is measured in the run that prints it (the floor and deid included), on a corpus
made there by :mod:`deid_workers.synth`: comparing against numbers measured elsewhere, on
another load, says nothing. Modules:

- :mod:`benchmarks.corpus`   the synthetic corpus (small and CT-sized images, corrupt files)
- :mod:`benchmarks.procmem`  RSS from ``/proc`` (no psutil), a sampler of a process tree
- :mod:`benchmarks.floor`    plain pydicom read + write in N processes
- :mod:`benchmarks.cluster`  ``deid-submit`` end to end on the embedded cluster
- :mod:`benchmarks.deidref`  pydicom deid's own get + put, in a child process
- :mod:`benchmarks.memprobe` producer memory over 1,000,000 files and the ids export
- :mod:`benchmarks.profile`  pyinstrument over the get and put steps
- :mod:`benchmarks.bench_recipe` one recipe shape, ours vs deid, per file
"""
