"""Login-event streaming job on Apache Kafka, built with Bytewax.

`python -m bytewax.run dataflow.flow` runs the job; `python -m dataflow`
hosts the tools around it (local broker, local cluster runner, generator,
dead-letter review, benchmark).
"""
