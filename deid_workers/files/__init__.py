"""One file in, one outcome out: the work of each stage on one file, without Redis or Celery."""
