"""The run engine: building a run's components, training (one process or
several under DDP), checkpoints, the data path, evaluating and exporting
trained encoders, and measuring training speed. It knows no method and no
record format: it writes through a :class:`~sslx.engine.trainer.Recorder`
that :mod:`sslx.records` provides."""
