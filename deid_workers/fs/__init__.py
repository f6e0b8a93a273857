"""The filesystem: walking the input, path rules, atomic and durable writes, a run's folders."""
