"""Storage, below both the pipeline and `Distiset`: the response cache, the shard writer,
column typing and schema reconciliation, Parquet options and image columns.

Nothing here imports `pixtill.pipeline` or `pixtill.distiset`.
"""
